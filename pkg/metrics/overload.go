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
	descEvicted = prometheus.NewDesc("langgate_grpc_checks_evicted_total",
		"gRPC Checks ended while their message was still arriving: to make room under --grpc-max-streams, at --grpc-check-timeout, or for memory pressure.", nil, nil)
	descConnsClosed = prometheus.NewDesc("langgate_grpc_connections_closed_total",
		"gRPC connections closed for sending a Check's message too slowly (past --grpc-check-timeout, or past the receive grace under memory pressure).", nil, nil)
)

// Admission is what the gRPC port's admission reports
// (*extauthz.Admission).
type Admission interface {
	InFlight() int64
	Evicted() uint64
	ConnsClosed() uint64
}

// overloadCollector reads the overload guard and the gRPC admission at
// scrape time.
type overloadCollector struct {
	guard *overload.Guard
	adm   Admission
}

// RegisterOverload registers the overload guard's metrics on reg, and the
// gRPC admission's when adm is not nil.
func RegisterOverload(reg prometheus.Registerer, g *overload.Guard, adm Admission) {
	reg.MustRegister(&overloadCollector{guard: g, adm: adm})
}

func (c *overloadCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descOverloadLevel
	ch <- descOverloadUsed
	ch <- descShed
	if c.adm != nil {
		ch <- descStreams
		ch <- descEvicted
		ch <- descConnsClosed
	}
}

func (c *overloadCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.guard.Stats()
	ch <- prometheus.MustNewConstMetric(descOverloadLevel, prometheus.GaugeValue, float64(st.Level))
	ch <- prometheus.MustNewConstMetric(descOverloadUsed, prometheus.GaugeValue, float64(st.Used), "used")
	ch <- prometheus.MustNewConstMetric(descOverloadUsed, prometheus.GaugeValue, float64(st.Limit), "limit")
	ch <- prometheus.MustNewConstMetric(descShed, prometheus.CounterValue, float64(st.ShedUnverified), overload.Unverified.String())
	ch <- prometheus.MustNewConstMetric(descShed, prometheus.CounterValue, float64(st.Refused), overload.Refused.String())
	if c.adm != nil {
		ch <- prometheus.MustNewConstMetric(descStreams, prometheus.GaugeValue, float64(c.adm.InFlight()))
		ch <- prometheus.MustNewConstMetric(descEvicted, prometheus.CounterValue, float64(c.adm.Evicted()))
		ch <- prometheus.MustNewConstMetric(descConnsClosed, prometheus.CounterValue, float64(c.adm.ConnsClosed()))
	}
}
