package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	apiv1 "cloud.google.com/go/pubsub/v2/apiv1"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/sync/semaphore"
	"google.golang.org/api/option"
	"google.golang.org/grpc"

	"github.com/pubsub-shm/pubsub-shm/ackd"
	"github.com/pubsub-shm/pubsub-shm/ringbuf"
)

// The write path (docs/FORMAT.md section 6): a JVM writer asks pullerd, over the control
// socket (op attach_topic), for a writer ring pair; pullerd creates an OUTBOUND ring (the
// JVM produces Arrow batches of messages) and a RESULTS ring (pullerd produces one RAW
// record per batch: rows published, status, error text), publishes every batch with the
// Publish RPC and answers in the results ring. The pair lives in
// <root>/topics/<project>.<topic>/ as outbound-<id>.ring and results-<id>.ring, and is
// removed when the JVM closes (or dies) and the requests in flight have finished.

// Pub/Sub's publish request limits.
const (
	MaxPublishMessages     = 1000
	MaxPublishRequestBytes = 10_000_000
)

// Defaults of PublishConfig fields left zero.
const (
	DefaultPublishLinger          = 5 * time.Millisecond
	DefaultPublishRequestBytes    = 5_000_000
	DefaultPublishInflight        = 8
	DefaultPublishOutstandingByte = 256 << 20
	DefaultPublishRetryTimeout    = 60 * time.Second
	DefaultPublishAttemptTimeout  = 60 * time.Second
	DefaultOutboundRingCapacity   = 16 << 20
	DefaultResultsRingCapacity    = 1 << 20
	DefaultWriterAttachTimeout    = 30 * time.Second
	// MaxLabelLength bounds the free-text label of a writer (logs and status).
	MaxLabelLength = 256
)

// PublishConfig configures the write path. Zero fields take the defaults above.
type PublishConfig struct {
	// Linger: a Publish request is sent at most this long after its first message was
	// read from the ring (DefaultPublishLinger).
	Linger time.Duration
	// MaxRequestBytes: a request is sent when its encoded size would pass this
	// (DefaultPublishRequestBytes, at most MaxPublishRequestBytes). A request also never
	// carries more than MaxPublishMessages messages.
	MaxRequestBytes int64
	// MaxInflight: Publish requests in flight per writer (DefaultPublishInflight). A writer
	// sends at most one request at a time for messages that share an ordering-key lane.
	MaxInflight int
	// MaxOutstandingBytes: flow control over the encoded bytes of the requests in flight,
	// all writers together (DefaultPublishOutstandingByte). A request larger than the
	// bound waits until nothing else is in flight.
	MaxOutstandingBytes int64
	// RetryTimeout: a request that keeps failing with a transient code (UNAVAILABLE,
	// RESOURCE_EXHAUSTED, ABORTED, INTERNAL, DEADLINE_EXCEEDED) is retried with
	// exponential back-off and jitter until this long after its first attempt
	// (DefaultPublishRetryTimeout); then its rows fail with the last error.
	RetryTimeout time.Duration
	// AttemptTimeout bounds one Publish call (DefaultPublishAttemptTimeout).
	AttemptTimeout time.Duration
	// Backoff between attempts; ackd.DefaultBackoff if zero.
	Backoff ackd.Backoff
	// OutboundRingCapacity and ResultsRingCapacity size a writer's rings (powers of two).
	OutboundRingCapacity int64
	ResultsRingCapacity  int64
	// AttachTimeout: a ring pair whose JVM has not attached as producer within this time is
	// removed (DefaultWriterAttachTimeout).
	AttachTimeout time.Duration
}

func (c PublishConfig) withDefaults() (PublishConfig, error) {
	if c.Linger == 0 {
		c.Linger = DefaultPublishLinger
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = DefaultPublishRequestBytes
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = DefaultPublishInflight
	}
	if c.MaxOutstandingBytes == 0 {
		c.MaxOutstandingBytes = DefaultPublishOutstandingByte
	}
	if c.RetryTimeout == 0 {
		c.RetryTimeout = DefaultPublishRetryTimeout
	}
	if c.AttemptTimeout == 0 {
		c.AttemptTimeout = DefaultPublishAttemptTimeout
	}
	if c.Backoff == (ackd.Backoff{}) {
		c.Backoff = ackd.DefaultBackoff
	}
	if c.OutboundRingCapacity == 0 {
		c.OutboundRingCapacity = DefaultOutboundRingCapacity
	}
	if c.ResultsRingCapacity == 0 {
		c.ResultsRingCapacity = DefaultResultsRingCapacity
	}
	if c.AttachTimeout == 0 {
		c.AttachTimeout = DefaultWriterAttachTimeout
	}
	switch {
	case c.Linger < 0:
		return c, fmt.Errorf("publish linger %v: want positive", c.Linger)
	case c.MaxRequestBytes < 1 || c.MaxRequestBytes > MaxPublishRequestBytes:
		return c, fmt.Errorf("publish request bytes %d: want 1..%d (Pub/Sub's limit)", c.MaxRequestBytes, MaxPublishRequestBytes)
	case c.MaxInflight < 1 || c.MaxInflight > 1000:
		return c, fmt.Errorf("publish requests in flight %d: want 1..1000", c.MaxInflight)
	case c.MaxOutstandingBytes < 1:
		return c, fmt.Errorf("publish outstanding bytes %d: want positive", c.MaxOutstandingBytes)
	case c.RetryTimeout < 0 || c.AttemptTimeout <= 0 || c.AttachTimeout <= 0:
		return c, fmt.Errorf("publish retry timeout %v, attempt timeout %v, attach timeout %v: want positive", c.RetryTimeout, c.AttemptTimeout, c.AttachTimeout)
	}
	for _, rc := range []struct {
		name string
		v    int64
	}{{"outbound ring capacity", c.OutboundRingCapacity}, {"results ring capacity", c.ResultsRingCapacity}} {
		if rc.v < ringbuf.MinCapacity || rc.v > ringbuf.MaxCapacity || rc.v&(rc.v-1) != 0 {
			return c, fmt.Errorf("%s=%d: want a power of two from %d to %d", rc.name, rc.v, ringbuf.MinCapacity, ringbuf.MaxCapacity)
		}
	}
	return c, nil
}

// Topic names one topic.
type Topic struct {
	Project string
	Topic   string // the topic ID, without projects/.../topics/
}

// FullName returns projects/<project>/topics/<topic>.
func (t Topic) FullName() string { return "projects/" + t.Project + "/topics/" + t.Topic }

// topicRE is Pub/Sub's rule for topic IDs (the same as for subscriptions).
var topicRE = subRE

// ParseTopic parses "projects/<p>/topics/<t>" or a bare topic ID resolved against
// defaultProject, and checks both names against Pub/Sub's rules.
func ParseTopic(s, defaultProject string) (Topic, error) {
	var t Topic
	if strings.HasPrefix(s, "projects/") {
		parts := strings.Split(s, "/")
		if len(parts) != 4 || parts[2] != "topics" {
			return t, fmt.Errorf("topic %q: want projects/<project>/topics/<id> or a bare id", s)
		}
		t.Project, t.Topic = parts[1], parts[3]
	} else {
		t.Project, t.Topic = defaultProject, s
	}
	if t.Project == "" {
		return t, fmt.Errorf("topic %q: no project (give project or use projects/<project>/topics/<id>)", t.Topic)
	}
	if !projectRE.MatchString(t.Project) {
		return t, fmt.Errorf("project %q: want lower-case letters, digits, '-', '.' or ':' (at most 100)", t.Project)
	}
	if !topicRE.MatchString(t.Topic) || strings.HasPrefix(t.Topic, "goog") {
		return t, fmt.Errorf("topic id %q: want 3-255 characters from [A-Za-z0-9._~+%%-], starting with a letter, not with \"goog\"", t.Topic)
	}
	return t, nil
}

// File and directory names of the write path (docs/FORMAT.md section 6).
const TopicsDirName = "topics"

// OutboundRingName and ResultsRingName return the file names of writer id's rings.
func OutboundRingName(id int64) string { return "outbound-" + strconv.FormatInt(id, 10) + ".ring" }
func ResultsRingName(id int64) string  { return "results-" + strconv.FormatInt(id, 10) + ".ring" }

var writerRingRE = regexp.MustCompile(`^(outbound|results)-(0|[1-9][0-9]*)\.ring$`)

// AttachTopicRequest holds the attach_topic fields of a control request.
type AttachTopicRequest struct {
	Topic Topic
	// Label describes the writer (e.g. Spark query, partition, task) in logs and status.
	Label string
	// RingCapacity overrides PublishConfig.OutboundRingCapacity for this writer (0: default).
	RingCapacity int64
	// Linger and MaxRequestBytes override the daemon's for this writer (0: default).
	Linger          time.Duration
	MaxRequestBytes int64
}

// RingFile describes one ring of a writer in a control answer.
type RingFile struct {
	File string `json:"file"`
	// InstanceID is ring_instance_id as an unsigned decimal string.
	InstanceID string `json:"instance_id"`
	Capacity   int64  `json:"capacity"`
}

// WriterStatus describes one writer ring pair in a control answer.
type WriterStatus struct {
	ID              int64    `json:"id"`
	Project         string   `json:"project"`
	Topic           string   `json:"topic"`
	Label           string   `json:"label,omitempty"`
	Dir             string   `json:"dir"`
	Outbound        RingFile `json:"outbound_ring"`
	Results         RingFile `json:"results_ring"`
	LingerMs        float64  `json:"linger_ms"`
	MaxRequestBytes int64    `json:"max_request_bytes"`
	MaxMessages     int      `json:"max_request_messages"`
	ProducerAlive   bool     `json:"producer_alive"`
	Batches         int64    `json:"batches"`
	Rows            int64    `json:"rows"`
	Published       int64    `json:"published"`
	FailedRows      int64    `json:"failed_rows"`
	InflightReqs    int64    `json:"requests_in_flight"`
}

// publishing is the write path of one Daemon: the writers, the Publish client (created on
// the first attach_topic) and the flow control shared by every writer.
type publishing struct {
	d    *Daemon
	cfg  PublishConfig
	log  *zap.Logger
	root string
	flow *semaphore.Weighted
	m    *pubMetrics

	mu      sync.Mutex
	client  *apiv1.TopicAdminClient
	writers map[int64]*topicWriter
	nextID  int64
	closing bool
	wg      sync.WaitGroup
}

func newPublishing(d *Daemon) *publishing {
	return &publishing{d: d, cfg: d.cfg.Publish, log: d.log.Named("publish"), root: filepath.Join(d.cfg.Dir, TopicsDirName),
		flow: semaphore.NewWeighted(d.cfg.Publish.MaxOutstandingBytes), m: newPubMetrics(d.reg), writers: map[int64]*topicWriter{}}
}

// removeStale removes what a previous pullerd left under <root>/topics: this pullerd
// serves the root socket, so no other pullerd uses these rings. A JVM still mapping one
// sees its peer closed or dead.
func (p *publishing) removeStale() {
	dirs, err := os.ReadDir(p.root)
	if err != nil {
		return
	}
	n := 0
	for _, d := range dirs {
		dir := filepath.Join(p.root, d.Name())
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if writerRingRE.MatchString(e.Name()) || tmpFileRE.MatchString(e.Name()) {
				if os.Remove(filepath.Join(dir, e.Name())) == nil {
					n++
				}
			}
		}
		_ = os.Remove(dir) // only if empty
	}
	_ = os.Remove(p.root)
	if n > 0 {
		p.log.Info("removed writer rings left by a previous pullerd", zap.Int("files", n))
	}
}

// publisher returns the Publish client, creating it on first use.
func (p *publishing) publisher() (*apiv1.TopicAdminClient, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.client != nil {
		return p.client, nil
	}
	opts := append([]option.ClientOption{
		option.WithGRPCDialOption(grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(2 * MaxPublishRequestBytes))),
	}, p.d.cfg.ClientOptions...)
	c, err := apiv1.NewTopicAdminClient(context.Background(), opts...)
	if err != nil {
		return nil, fmt.Errorf("Pub/Sub publisher client (check credentials, or PUBSUB_EMULATOR_HOST for an emulator): %w", err)
	}
	p.client = c
	return c, nil
}

// attach creates a writer ring pair for req and starts its publisher loop.
func (p *publishing) attach(req AttachTopicRequest) (WriterStatus, error) {
	if len(req.Label) > MaxLabelLength {
		return WriterStatus{}, fmt.Errorf("bad request: label of %d bytes: at most %d", len(req.Label), MaxLabelLength)
	}
	capacity := req.RingCapacity
	if capacity == 0 {
		capacity = p.cfg.OutboundRingCapacity
	}
	if capacity < 1<<16 || capacity > ringbuf.MaxCapacity || capacity&(capacity-1) != 0 {
		return WriterStatus{}, fmt.Errorf("bad request: ring_capacity=%d: want a power of two from %d to %d", capacity, 1<<16, ringbuf.MaxCapacity)
	}
	wc := writerConfig{linger: p.cfg.Linger, maxBytes: p.cfg.MaxRequestBytes, maxMsgs: MaxPublishMessages, maxInflight: p.cfg.MaxInflight}
	if req.Linger < 0 || req.MaxRequestBytes < 0 || req.MaxRequestBytes > MaxPublishRequestBytes {
		return WriterStatus{}, fmt.Errorf("bad request: linger_ms must be >= 0 and max_request_bytes in 0..%d", MaxPublishRequestBytes)
	}
	if req.Linger > 0 {
		wc.linger = req.Linger
	}
	if req.MaxRequestBytes > 0 {
		wc.maxBytes = req.MaxRequestBytes
	}
	client, err := p.publisher()
	if err != nil {
		return WriterStatus{}, err
	}
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		return WriterStatus{}, errors.New("pullerd is shutting down")
	}
	p.nextID++
	id := p.nextID
	p.wg.Add(1)
	p.mu.Unlock()
	w, err := newTopicWriter(p, client, id, req, capacity, wc)
	if err != nil {
		p.wg.Done()
		return WriterStatus{}, fmt.Errorf("attach_topic %s: %w", req.Topic.FullName(), err)
	}
	p.mu.Lock()
	p.writers[id] = w
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		w.run()
		p.mu.Lock()
		delete(p.writers, id)
		p.mu.Unlock()
	}()
	return w.status(), nil
}

// topicDir returns (and creates, mode 0700) the directory of a topic's writers.
func (p *publishing) topicDir(t Topic) (string, error) {
	if err := ringbuf.EnsureDir(p.root); err != nil {
		return "", err
	}
	dir := filepath.Join(p.root, t.Project+"."+t.Topic)
	if err := ringbuf.EnsureDir(dir); err != nil {
		return "", err
	}
	return dir, nil
}

// removeDir removes a topic directory and the topics directory once they are empty.
func (p *publishing) removeDir(dir string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = os.Remove(dir)
	_ = os.Remove(p.root)
}

// statusAll returns every writer's status, by id.
func (p *publishing) statusAll() []WriterStatus {
	p.mu.Lock()
	ws := make([]*topicWriter, 0, len(p.writers))
	for _, w := range p.writers {
		ws = append(ws, w)
	}
	p.mu.Unlock()
	sort.Slice(ws, func(i, j int) bool { return ws[i].id < ws[j].id })
	out := make([]WriterStatus, 0, len(ws))
	for _, w := range ws {
		out = append(out, w.status())
	}
	return out
}

// shutdown stops every writer: no new batches are read, requests in flight get the
// shutdown timeout to finish, every batch left unpublished is answered with an error,
// and the rings are removed. Then the client is closed.
func (p *publishing) shutdown() {
	p.mu.Lock()
	p.closing = true
	ws := make([]*topicWriter, 0, len(p.writers))
	for _, w := range p.writers {
		ws = append(ws, w)
	}
	p.mu.Unlock()
	for _, w := range ws {
		w.stop(p.d.cfg.ShutdownTimeout)
	}
	p.wg.Wait()
	p.mu.Lock()
	if p.client != nil {
		_ = p.client.Close()
		p.client = nil
	}
	p.mu.Unlock()
	p.m.unregister()
}

// pubMetrics are the write path's metrics, labelled by topic.
type pubMetrics struct {
	reg        prometheus.Registerer
	writers    *prometheus.GaugeVec
	batches    *prometheus.CounterVec
	published  *prometheus.CounterVec
	bytes      *prometheus.CounterVec
	requests   *prometheus.CounterVec
	retries    *prometheus.CounterVec
	failed     *prometheus.CounterVec
	inflight   *prometheus.GaugeVec
	latency    *prometheus.HistogramVec
	collectors []prometheus.Collector
}

func newPubMetrics(reg prometheus.Registerer) *pubMetrics {
	m := &pubMetrics{reg: reg}
	cv := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, append([]string{"topic"}, labels...))
		m.collectors = append(m.collectors, c)
		return c
	}
	gv := func(name, help string) *prometheus.GaugeVec {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{"topic"})
		m.collectors = append(m.collectors, g)
		return g
	}
	m.writers = gv("pullerd_publish_writers", "Writer ring pairs (OUTBOUND + RESULTS) attached.")
	m.batches = cv("pullerd_publish_batches_total", "OUTBOUND batches answered in a RESULTS ring, by status.", "status")
	m.published = cv("pullerd_publish_messages_total", "Messages Pub/Sub accepted (message ids received).")
	m.bytes = cv("pullerd_publish_bytes_total", "Encoded bytes of the Publish requests Pub/Sub accepted.")
	m.requests = cv("pullerd_publish_requests_total", "Publish calls, by gRPC code.", "code")
	m.retries = cv("pullerd_publish_retries_total", "Publish requests sent again after a transient failure, by gRPC code.", "code")
	m.failed = cv("pullerd_publish_failed_messages_total", "Messages that were not published (permanent error, retries exhausted, writer gone).")
	m.inflight = gv("pullerd_publish_requests_in_flight", "Publish requests in flight.")
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "pullerd_publish_batch_seconds",
		Help:    "Time from reading an OUTBOUND batch to answering it in the RESULTS ring.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}, []string{"topic"})
	m.collectors = append(m.collectors, m.latency)
	if reg != nil {
		for _, c := range m.collectors {
			reg.MustRegister(c)
		}
	}
	return m
}

func (m *pubMetrics) unregister() {
	if m.reg == nil {
		return
	}
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
}
