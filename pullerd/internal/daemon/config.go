// Package daemon is pullerd: it pulls Pub/Sub subscriptions with StreamingPull, writes
// the messages as Arrow batches into per-partition DATA rings under a ring set directory,
// keeps each batch's ack IDs in a native ack table, extends their leases, and runs ackd on
// the ring set's COMMIT ring to acknowledge what the reader committed.
//
// Goroutines per subscription: one per stream (StreamingPull -> partitions, in slices),
// one per partition (the single producer of its ring: arrowbatch.Batcher + ack table),
// one lease loop (ModifyAckDeadline before deadlines), one monitor (producer heartbeats,
// consumer liveness, metrics), and ackd (COMMIT ring -> Acknowledge). One control server
// and one metrics server per process.
package daemon

import (
	"fmt"
	"net"
	"regexp"
	"runtime"
	"strings"
	"time"

	"go.uber.org/zap"
	"google.golang.org/api/option"

	"github.com/pubsub-shm/pubsub-shm/ringbuf"
	"github.com/pubsub-shm/pubsub-shm/ringbuf/arrowbatch"
)

// Defaults of Config fields left zero.
const (
	DefaultRingCapacity       = 64 << 20
	DefaultCommitRingCapacity = 1 << 20 // 16384 commit records
	DefaultAckDeadline        = 60 * time.Second
	DefaultReaderTimeout      = 10 * time.Second
	DefaultReaderGrace        = 10 * time.Second
	DefaultStreamBudget       = 10000 // Pub/Sub's active_streaming_pull_connections quota per project
	DefaultStagger            = 2 * time.Second
	DefaultShutdownTimeout    = 10 * time.Second
	DefaultMetricsAddr        = "127.0.0.1:0"
	DefaultMaxOutstandingMsgs = 1_000_000
	MaxPartitions             = 1024
	// MaxStreams bounds the streams an attach request may ask for; a subscription never
	// has more streams than partitions anyway.
	MaxStreams = MaxPartitions
)

// Sub names one subscription.
type Sub struct {
	Project      string
	Subscription string // the subscription ID, without projects/.../subscriptions/
	Partitions   int    // 0: Config.Partitions
}

// FullName returns projects/<project>/subscriptions/<subscription>.
func (s Sub) FullName() string { return "projects/" + s.Project + "/subscriptions/" + s.Subscription }

// SetName returns the ring set directory name, <project>.<subscription>.
func (s Sub) SetName() string { return s.Project + "." + s.Subscription }

var (
	// Pub/Sub's own rules: a project ID (or domain-scoped "example.com:proj"), and a
	// subscription ID of 3 to 255 characters starting with a letter.
	projectRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.:-]{0,99}$`)
	subRE     = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9._~+%-]{2,254}$`)
)

// ParseSub parses "projects/<p>/subscriptions/<s>" or a bare subscription ID resolved
// against defaultProject, and checks both names against Pub/Sub's rules.
func ParseSub(s, defaultProject string) (Sub, error) {
	var sub Sub
	if strings.HasPrefix(s, "projects/") {
		parts := strings.Split(s, "/")
		if len(parts) != 4 || parts[2] != "subscriptions" {
			return sub, fmt.Errorf("subscription %q: want projects/<project>/subscriptions/<id> or a bare id", s)
		}
		sub.Project, sub.Subscription = parts[1], parts[3]
	} else {
		sub.Project, sub.Subscription = defaultProject, s
	}
	return sub, sub.Validate()
}

// Validate checks the names against Pub/Sub's rules (which also makes them safe as a
// directory name) and the partition count.
func (s Sub) Validate() error {
	if s.Project == "" {
		return fmt.Errorf("subscription %q: no project (set -project or use projects/<project>/subscriptions/<id>)", s.Subscription)
	}
	if !projectRE.MatchString(s.Project) {
		return fmt.Errorf("project %q: want lower-case letters, digits, '-', '.' or ':' (at most 100)", s.Project)
	}
	if !subRE.MatchString(s.Subscription) || strings.HasPrefix(s.Subscription, "goog") {
		return fmt.Errorf("subscription id %q: want 3-255 characters from [A-Za-z0-9._~+%%-], starting with a letter, not with \"goog\"", s.Subscription)
	}
	if s.Partitions < 0 || s.Partitions > MaxPartitions {
		return fmt.Errorf("subscription %q: partitions=%d: want 1..%d (0 for the default)", s.Subscription, s.Partitions, MaxPartitions)
	}
	return nil
}

// Config is everything pullerd needs. Zero fields take the defaults documented on them.
type Config struct {
	// Dir is the root of the ring sets; ringbuf.DefaultDir() if empty.
	Dir string
	// Subscriptions to attach at start. More can be attached through the control socket.
	Subscriptions []Sub
	// Partitions is the number of virtual partitions (DATA rings) per subscription;
	// 2 x cores if zero.
	Partitions int
	// Streams is the number of StreamingPull streams per subscription; 2 x cores if zero.
	// Never more than the partitions, nor than StreamBudget/Hosts.
	Streams int
	// StreamBudget is the project-wide number of streams this deployment may open
	// (Pub/Sub's active_streaming_pull_connections quota); DefaultStreamBudget if zero.
	StreamBudget int
	// Hosts is the number of pullerd hosts sharing StreamBudget; 1 if zero.
	Hosts int
	// Stagger: each stream waits a random time in [0, Stagger) before its first open, so
	// that many hosts starting at once do not open all their streams together.
	// DefaultStagger if zero; negative for none.
	Stagger time.Duration
	// RingCapacity is each DATA ring's capacity; DefaultRingCapacity if zero.
	RingCapacity int64
	// CommitRingCapacity is the COMMIT ring's capacity; DefaultCommitRingCapacity if zero.
	CommitRingCapacity int64
	// MaxOutstandingMessages and MaxOutstandingBytes bound what a subscription holds
	// (received, not yet acked or nacked). Streams stop reading at the bound, and the bound
	// (split over the streams) is sent in StreamingPull's initial request so that Pub/Sub
	// stops sending. Defaults: DefaultMaxOutstandingMsgs and 3/4 of the partitions' ring
	// capacity.
	MaxOutstandingMessages int64
	MaxOutstandingBytes    int64
	// Batch is the batch policy (rows, bytes, linger); arrowbatch.DefaultPolicy if zero.
	Batch arrowbatch.Policy
	// AckDeadline is the lease pullerd asks for and keeps extending; DefaultAckDeadline if
	// zero. 10 s to 600 s (the emulator accepts from 1 s).
	AckDeadline time.Duration
	// ReaderTimeout: a reader whose heartbeat is older is dead (ringbuf.PeerAlive);
	// DefaultReaderTimeout if zero.
	ReaderTimeout time.Duration
	// ReaderGrace: after a reader is found dead, pullerd waits this long before it nacks
	// what the reader had not committed and recreates the ring; DefaultReaderGrace if zero.
	ReaderGrace time.Duration
	// MetricsAddr is the loopback host:port of the Prometheus endpoint; DefaultMetricsAddr
	// if empty. Non-loopback addresses are refused unless MetricsRemote is set.
	MetricsAddr string
	// MetricsRemote allows a MetricsAddr that is not a loopback address (e.g. ":9464",
	// for Prometheus to scrape a pod). The endpoint serves /metrics only, read-only.
	MetricsRemote bool
	// ShutdownTimeout bounds the acks and nacks sent while shutting down (and the Publish
	// requests still in flight).
	ShutdownTimeout time.Duration
	// Publish configures the write path (OUTBOUND rings -> Publish); see PublishConfig.
	Publish PublishConfig
	// ClientOptions are passed to the Pub/Sub client (tests, benchmarks). Without them the
	// client honours PUBSUB_EMULATOR_HOST.
	ClientOptions []option.ClientOption
	// Log is the logger; zap.NewNop if nil.
	Log *zap.Logger
	// Ready, if not nil, is called once pullerd serves: the control socket path and the
	// metrics address.
	Ready func(controlSocket, metricsAddr string)
}

// withDefaults fills the zero fields and validates everything.
func (c Config) withDefaults() (Config, error) {
	cores := runtime.NumCPU()
	if c.Dir == "" {
		c.Dir = ringbuf.DefaultDir()
	}
	if c.Partitions == 0 {
		c.Partitions = 2 * cores
	}
	if c.Partitions < 1 || c.Partitions > MaxPartitions {
		return c, fmt.Errorf("partitions=%d: want 1..%d", c.Partitions, MaxPartitions)
	}
	if c.Streams == 0 {
		c.Streams = 2 * cores
	}
	if c.StreamBudget == 0 {
		c.StreamBudget = DefaultStreamBudget
	}
	if c.Hosts == 0 {
		c.Hosts = 1
	}
	if c.Streams < 1 || c.StreamBudget < 1 || c.Hosts < 1 {
		return c, fmt.Errorf("streams=%d, stream budget=%d, hosts=%d: each must be positive", c.Streams, c.StreamBudget, c.Hosts)
	}
	if c.StreamBudget < c.Hosts {
		return c, fmt.Errorf("stream budget %d is smaller than the number of hosts %d: every host needs at least one stream", c.StreamBudget, c.Hosts)
	}
	if c.Stagger == 0 {
		c.Stagger = DefaultStagger
	}
	if c.RingCapacity == 0 {
		c.RingCapacity = DefaultRingCapacity
	}
	if c.CommitRingCapacity == 0 {
		c.CommitRingCapacity = DefaultCommitRingCapacity
	}
	for _, rc := range []struct {
		name string
		v    int64
	}{{"ring capacity", c.RingCapacity}, {"commit ring capacity", c.CommitRingCapacity}} {
		if rc.v < ringbuf.MinCapacity || rc.v > ringbuf.MaxCapacity || rc.v&(rc.v-1) != 0 {
			return c, fmt.Errorf("%s=%d: want a power of two from %d to %d", rc.name, rc.v, ringbuf.MinCapacity, ringbuf.MaxCapacity)
		}
	}
	if c.Batch == (arrowbatch.Policy{}) {
		c.Batch = arrowbatch.DefaultPolicy
	}
	// A batch must fit the ring's max record (half the ring): Arrow adds offsets and
	// validity to the payload bytes.
	if c.Batch.MaxBytes > c.RingCapacity/8 {
		c.Batch.MaxBytes = c.RingCapacity / 8
	}
	if err := c.Batch.Validate(c.RingCapacity / 2); err != nil {
		return c, fmt.Errorf("batch policy: %w", err)
	}
	if c.MaxOutstandingMessages == 0 {
		c.MaxOutstandingMessages = DefaultMaxOutstandingMsgs
	}
	if c.MaxOutstandingBytes == 0 {
		c.MaxOutstandingBytes = int64(c.Partitions) * c.RingCapacity * 3 / 4
	}
	if c.MaxOutstandingMessages < 1 || c.MaxOutstandingBytes < 1 {
		return c, fmt.Errorf("max outstanding messages=%d, bytes=%d: want positive", c.MaxOutstandingMessages, c.MaxOutstandingBytes)
	}
	if c.AckDeadline == 0 {
		c.AckDeadline = DefaultAckDeadline
	}
	if c.AckDeadline < time.Second || c.AckDeadline > 600*time.Second || c.AckDeadline%time.Second != 0 {
		return c, fmt.Errorf("ack deadline %v: want whole seconds from 10s (1s against an emulator) to 600s", c.AckDeadline)
	}
	if c.ReaderTimeout == 0 {
		c.ReaderTimeout = DefaultReaderTimeout
	}
	if c.ReaderGrace == 0 {
		c.ReaderGrace = DefaultReaderGrace
	}
	if c.ReaderTimeout < 0 || c.ReaderGrace < 0 {
		return c, fmt.Errorf("reader timeout %v, grace %v: want positive", c.ReaderTimeout, c.ReaderGrace)
	}
	if c.MetricsAddr == "" {
		c.MetricsAddr = DefaultMetricsAddr
	}
	if c.MetricsRemote {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			return c, fmt.Errorf("metrics address %q: %w", c.MetricsAddr, err)
		}
	} else if err := CheckLoopback(c.MetricsAddr); err != nil {
		return c, fmt.Errorf("metrics address: %w (or allow it with -metrics-remote, e.g. for Prometheus to scrape a pod)", err)
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.Log == nil {
		c.Log = zap.NewNop()
	}
	var err error
	if c.Publish, err = c.Publish.withDefaults(); err != nil {
		return c, err
	}
	for i := range c.Subscriptions {
		if err := c.Subscriptions[i].Validate(); err != nil {
			return c, err
		}
	}
	return c, nil
}

// streamsFor returns the number of streams for a subscription with the given partitions:
// min(Streams, partitions, StreamBudget/Hosts), at least 1.
func (c *Config) streamsFor(partitions int) int {
	return max(1, min(c.Streams, partitions, c.StreamBudget/c.Hosts))
}

// streamsWanted returns the number of streams for a subscription with the given partitions
// when an attach request asked for requested streams: streamsFor(partitions) if requested
// is 0, else min(streamsFor(partitions), requested). Never more than the configured
// number, at least 1.
func (c *Config) streamsWanted(partitions, requested int) int {
	own := c.streamsFor(partitions)
	if requested <= 0 {
		return own
	}
	return max(1, min(own, requested))
}

// CheckLoopback refuses a listen address whose host is not a loopback address (or
// "localhost"): pullerd's endpoints are for the local host only.
func CheckLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q: the host must be a loopback address such as 127.0.0.1 or [::1]", addr)
	}
	return nil
}
