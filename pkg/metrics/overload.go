package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/langgate/langgate/pkg/overload"
)

var (
	descOverloadLevel = prometheus.NewDesc("langgate_overload_level",
		"Memory pressure: 0 normal, 1 high (unverified credentials shed), 2 critical (every new check refused).", nil, nil)
	descOverloadUsed = prometheus.NewDesc("langgate_overload_memory_bytes",
		"Memory the overload guard last measured (live heap and goroutine stacks) and the limit it measures against (0: none).", []string{"kind"}, nil)
	descShed = prometheus.NewDesc("langgate_overload_shed_total",
		"Checks refused with 503 for load, by reason: unverified (a credential not in the token cache, at high pressure) or refused (every new check at critical pressure, or over a transport's cap: streams, connections).", []string{"reason"}, nil)
	descStreams = prometheus.NewDesc("langgate_grpc_checks_in_flight",
		"gRPC Checks admitted and not yet answered, across connections.", nil, nil)
)

// overloadCollector reads the overload guard and the gRPC admission at
// scrape time.
type overloadCollector struct {
	guard    *overload.Guard
	inFlight func() int64
}

// RegisterOverload registers the overload guard's metrics on reg, and the
// gRPC Checks in flight when inFlight is set.
func RegisterOverload(reg prometheus.Registerer, g *overload.Guard, inFlight func() int64) {
	reg.MustRegister(&overloadCollector{guard: g, inFlight: inFlight})
}

func (c *overloadCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descOverloadLevel
	ch <- descOverloadUsed
	ch <- descShed
	if c.inFlight != nil {
		ch <- descStreams
	}
}

func (c *overloadCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.guard.Stats()
	ch <- prometheus.MustNewConstMetric(descOverloadLevel, prometheus.GaugeValue, float64(st.Level))
	ch <- prometheus.MustNewConstMetric(descOverloadUsed, prometheus.GaugeValue, float64(st.Used), "used")
	ch <- prometheus.MustNewConstMetric(descOverloadUsed, prometheus.GaugeValue, float64(st.Limit), "limit")
	ch <- prometheus.MustNewConstMetric(descShed, prometheus.CounterValue, float64(st.ShedUnverified), overload.Unverified.String())
	ch <- prometheus.MustNewConstMetric(descShed, prometheus.CounterValue, float64(st.Refused), overload.Refused.String())
	if c.inFlight != nil {
		ch <- prometheus.MustNewConstMetric(descStreams, prometheus.GaugeValue, float64(c.inFlight()))
	}
}
