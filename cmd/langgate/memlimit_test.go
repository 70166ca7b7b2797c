package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestCgroupMemoryLimit: the limit of the process's own cgroup, v2 or v1;
// none when unlimited or absent.
func TestCgroupMemoryLimit(t *testing.T) {
	for _, c := range []struct {
		name, cgroup, file, value string
		want                      int64
		ok                        bool
	}{
		{"v2", "0::/kubepods/pod1/c1\n", "sys/fs/cgroup/kubepods/pod1/c1/memory.max", "536870912\n", 536870912, true},
		{"v2 unlimited", "0::/a\n", "sys/fs/cgroup/a/memory.max", "max\n", 0, false},
		{"v1", "12:cpu,cpuacct:/x\n9:memory:/docker/abc\n", "sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes", "268435456", 268435456, true},
		{"v1 unlimited", "9:memory:/\n", "sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712", 0, false},
		{"no limit file", "0::/gone\n", "sys/fs/cgroup/other/memory.max", "1", 0, false},
	} {
		root := t.TempDir()
		must := func(path, data string) {
			t.Helper()
			if err := os.MkdirAll(filepath.Dir(filepath.Join(root, path)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, path), []byte(data), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		must("proc/self/cgroup", c.cgroup)
		must(c.file, c.value)
		if got, ok := cgroupMemoryLimit(root, "proc/self/cgroup"); got != c.want || ok != c.ok {
			t.Errorf("%s: %d %v, want %d %v", c.name, got, ok, c.want, c.ok)
		}
	}
	for in, want := range map[string]int64{"512MiB": 512 << 20, "1GiB": 1 << 30, "1000": 1000, "64KiB": 64 << 10} {
		if got, err := parseSize(in); got != want || err != nil {
			t.Errorf("parseSize(%q) = %d, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "-1MiB", "0", "12XB", "1.5GiB"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) accepted", bad)
		}
	}
	if _, _, err := applyMemoryLimit("lots"); err == nil {
		t.Error("--memory-limit lots accepted")
	}
}
