package ackd

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the counters ackd updates for one subscription. A nil *Metrics counts
// nothing. Build one with NewMetrics.
type Metrics struct {
	AcksSent       prometheus.Counter     // ack IDs acknowledged
	NacksSent      prometheus.Counter     // ack IDs nacked (ModifyAckDeadline 0)
	CommitRecords  prometheus.Counter     // commit records consumed (all types)
	UnknownBatches prometheus.Counter     // batch ids committed that were not in the table
	StaleCommits   prometheus.Counter     // records naming a data ring incarnation that is gone
	BadRecords     prometheus.Counter     // records that broke a rule of docs/FORMAT.md
	AckLatency     prometheus.Observer    // seconds from commit record to Pub/Sub's acceptance
	AckFailures    *prometheus.CounterVec // ack IDs refused for good, by reason
	Retries        *prometheus.CounterVec // requests retried, by operation
}

// NewMetrics returns metrics with the given constant labels, registered with reg (which may
// be nil: then they are not exported).
func NewMetrics(reg prometheus.Registerer, labels prometheus.Labels) *Metrics {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels})
	}
	m := &Metrics{
		AcksSent:       c("pullerd_acks_sent_total", "Ack IDs acknowledged (Acknowledge accepted by Pub/Sub)."),
		NacksSent:      c("pullerd_nacks_sent_total", "Ack IDs nacked with ModifyAckDeadline 0 (RELEASE/NACK records, reader death, shutdown)."),
		CommitRecords:  c("pullerd_commit_records_total", "Commit ring records consumed."),
		UnknownBatches: c("pullerd_unknown_batch_commits_total", "Committed batch ids that were not in the ack table (never written, already settled, or committed twice)."),
		StaleCommits:   c("pullerd_stale_commits_total", "Commit records for a data ring incarnation that no longer exists (data_ring_instance_id mismatch)."),
		BadRecords:     c("pullerd_bad_commit_records_total", "Commit records that broke a rule of docs/FORMAT.md and were skipped."),
		AckLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pullerd_ack_latency_seconds",
			Help:        "Seconds from a commit record's produced_unix_ns to Pub/Sub accepting its Acknowledge.",
			ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18)}),
		AckFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pullerd_ack_failures_total",
			Help: "Ack IDs that Pub/Sub refused for good (exactly-once per-ack-ID failures and permanent errors), by reason.", ConstLabels: labels}, []string{"reason"}),
		Retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pullerd_ack_retries_total",
			Help: "Acknowledge/ModifyAckDeadline requests retried after a transient failure, by operation.", ConstLabels: labels}, []string{"op"}),
	}
	if reg != nil {
		for _, col := range []prometheus.Collector{m.AcksSent, m.NacksSent, m.CommitRecords, m.UnknownBatches,
			m.StaleCommits, m.BadRecords, m.AckLatency.(prometheus.Histogram), m.AckFailures, m.Retries} {
			reg.MustRegister(col)
		}
	}
	return m
}

// Unregister removes the metrics from reg.
func (m *Metrics) Unregister(reg prometheus.Registerer) {
	if m == nil || reg == nil {
		return
	}
	for _, col := range []prometheus.Collector{m.AcksSent, m.NacksSent, m.CommitRecords, m.UnknownBatches,
		m.StaleCommits, m.BadRecords, m.AckLatency.(prometheus.Histogram), m.AckFailures, m.Retries} {
		reg.Unregister(col)
	}
}

func (m *Metrics) ackFailed(reason string, n int) {
	if m != nil {
		m.AckFailures.WithLabelValues(reason).Add(float64(n))
	}
}

func (m *Metrics) retried(op string) {
	if m != nil {
		m.Retries.WithLabelValues(op).Inc()
	}
}

// add adds n to the counter c picks, if m is not nil.
func (m *Metrics) add(c func(*Metrics) prometheus.Counter, n float64) {
	if m != nil {
		c(m).Add(n)
	}
}
