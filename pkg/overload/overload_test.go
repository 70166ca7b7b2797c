package overload_test

import (
	"context"
	"testing"
	"time"

	"github.com/langgate/langgate/pkg/overload"
)

func TestLevels(t *testing.T) {
	g := new(overload.Guard)
	for _, s := range []struct {
		used, limit int64
		want        overload.Level
	}{
		{10, 0, overload.Normal}, // no limit: nothing to measure against
		{79, 100, overload.Normal},
		{80, 100, overload.High},
		{76, 100, overload.High}, // within the exit margin
		{74, 100, overload.Normal},
		{92, 100, overload.Critical},
		{88, 100, overload.Critical},
		{86, 100, overload.High},
		{100, 0, overload.Normal},
	} {
		if got := g.Observe(s.used, s.limit); got != s.want {
			t.Errorf("%d of %d: %v, want %v", s.used, s.limit, got, s.want)
		}
	}
}

func TestShedCounts(t *testing.T) {
	var nilGuard *overload.Guard
	if nilGuard.ShedUnverified() || nilGuard.RefuseNew() || nilGuard.Level() != overload.Normal {
		t.Fatal("a nil guard sheds")
	}
	nilGuard.CountRefused()
	g := new(overload.Guard)
	if g.ShedUnverified() || g.RefuseNew() {
		t.Fatal("a Normal guard sheds")
	}
	g.Observe(85, 100)
	if !g.ShedUnverified() || g.RefuseNew() {
		t.Fatal("High must shed unverified work only")
	}
	g.Observe(99, 100)
	if !g.ShedUnverified() || !g.RefuseNew() {
		t.Fatal("Critical must shed everything new")
	}
	g.CountRefused()
	if st := g.Stats(); st.ShedUnverified != 2 || st.Refused != 2 || st.Level != overload.Critical || st.Used != 99 || st.Limit != 100 {
		t.Fatalf("stats %+v", st)
	}
}

// TestRunSamples: Run measures the process against the runtime's limit
// (none in a test binary unless GOMEMLIMIT is set: Normal, limit 0).
func TestRunSamples(t *testing.T) {
	g := new(overload.Guard)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.Run(ctx, time.Millisecond); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for g.Stats().Used == 0 {
		if time.Now().After(deadline) {
			t.Fatal("Run never sampled")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	if st := g.Stats(); st.Used <= 0 {
		t.Fatalf("stats %+v", st)
	}
}
