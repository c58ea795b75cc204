package daemon

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pubsub-shm/pubsub-shm/ackd"
)

// subMetrics are one subscription's metrics, labelled subscription="projects/.../...".
type subMetrics struct {
	ackd              *ackd.Metrics
	unacked           prometheus.Gauge
	heldMsgs          prometheus.Gauge
	heldBytes         prometheus.Gauge
	received          prometheus.Counter
	receivedBytes     prometheus.Counter
	batches           prometheus.Counter
	rowsWritten       prometheus.Counter
	reopens           prometheus.Counter
	resourceExhausted prometheus.Counter
	streamErrors      *prometheus.CounterVec
	activeStreams     prometheus.Gauge
	leaseModacks      prometheus.Counter
	recreated         prometheus.Counter
	backpressured     prometheus.Counter
	ringFill          *prometheus.GaugeVec

	collectors []prometheus.Collector
	reg        prometheus.Registerer
}

func newSubMetrics(reg prometheus.Registerer, sub string) *subMetrics {
	labels := prometheus.Labels{"subscription": sub}
	m := &subMetrics{reg: reg, ackd: ackd.NewMetrics(reg, labels)}
	g := func(name, help string) prometheus.Gauge {
		x := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels})
		m.collectors = append(m.collectors, x)
		return x
	}
	c := func(name, help string) prometheus.Counter {
		x := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels})
		m.collectors = append(m.collectors, x)
		return x
	}
	m.unacked = g("pullerd_num_unacked_messages", "Messages this pullerd received and has neither acked nor nacked: the backlog it holds leased for the reader (Pub/Sub's own backlog is subscription/num_undelivered_messages).")
	m.heldMsgs = g("pullerd_held_messages", "Messages held (received, not yet settled); streams stop reading at -max-outstanding-messages.")
	m.heldBytes = g("pullerd_held_bytes", "Payload bytes held (received, not yet settled); streams stop reading at -max-outstanding-bytes.")
	m.received = c("pullerd_messages_received_total", "Messages received from StreamingPull.")
	m.receivedBytes = c("pullerd_received_bytes_total", "Payload bytes received from StreamingPull.")
	m.batches = c("pullerd_batches_written_total", "Arrow batches written into DATA rings.")
	m.rowsWritten = c("pullerd_rows_written_total", "Messages written into DATA rings.")
	m.reopens = c("pullerd_stream_reopens_total", "StreamingPull streams reopened after the server closed them or they failed.")
	m.resourceExhausted = c("pullerd_resource_exhausted_total", "StreamingPull streams that ended with RESOURCE_EXHAUSTED.")
	m.streamErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pullerd_stream_errors_total",
		Help: "StreamingPull streams that ended, by gRPC code (OK: closed by the server).", ConstLabels: labels}, []string{"code"})
	m.collectors = append(m.collectors, m.streamErrors)
	m.activeStreams = g("pullerd_active_streams", "StreamingPull streams open now.")
	m.leaseModacks = c("pullerd_lease_extensions_total", "Ack IDs whose lease was extended with ModifyAckDeadline.")
	m.recreated = c("pullerd_rings_recreated_total", "DATA rings recreated after their reader died (their uncommitted batches were nacked).")
	m.backpressured = c("pullerd_backpressure_waits_total", "Times a stream stopped reading because the outstanding bounds were reached.")
	m.ringFill = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pullerd_ring_fill_ratio",
		Help: "Fraction of a DATA ring's capacity in use (tail - head).", ConstLabels: labels}, []string{"partition"})
	m.collectors = append(m.collectors, m.ringFill)
	if reg != nil {
		for _, col := range m.collectors {
			reg.MustRegister(col)
		}
	}
	return m
}

func (m *subMetrics) fill(p int, ratio float64) {
	m.ringFill.WithLabelValues(strconv.Itoa(p)).Set(ratio)
}

// unregister removes the subscription's metrics (after it was detached).
func (m *subMetrics) unregister() {
	if m.reg == nil {
		return
	}
	for _, col := range m.collectors {
		m.reg.Unregister(col)
	}
	m.ackd.Unregister(m.reg)
}
