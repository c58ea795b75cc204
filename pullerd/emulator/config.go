package emulator

import (
	"fmt"
	"net"
	"strings"
	"time"

	"cloud.google.com/go/pubsub/v2/pstest"
	"go.uber.org/zap"
)

// Defaults applied by New to the zero fields of a Config.
const (
	// DefaultAddr is the listen address used when Config.Addr is empty: a
	// kernel-chosen port on the IPv4 loopback interface.
	DefaultAddr = "127.0.0.1:0"
	// DefaultProject is the project that short topic and subscription IDs are
	// resolved against when Config.Project is empty.
	DefaultProject = "local-project"
	// DefaultAckDeadline is the ack deadline of pre-created subscriptions when
	// neither Subscription.AckDeadline nor Config.AckDeadline is set. It is
	// Pub/Sub's own default.
	DefaultAckDeadline = 10 * time.Second
	// DefaultMaxMessagesPerPull is how many messages one StreamingPull stream
	// asks pstest for at a time when Config.MaxMessagesPerPull is zero. It is
	// the largest batch that Pub/Sub's Pull accepts.
	DefaultMaxMessagesPerPull = 1000
	// DefaultMaxResponseBytes caps the encoded size of one StreamingPullResponse
	// when Config.MaxResponseBytes is zero. It stays below gRPC's default 4 MiB
	// receive limit so that plain gRPC clients can read every response.
	DefaultMaxResponseBytes = 3 << 20
	// DefaultMinPollInterval is the first wait of a stream that found no
	// message to deliver.
	DefaultMinPollInterval = time.Millisecond
	// DefaultMaxPollInterval is the longest wait of an idle stream between two
	// polls of pstest. Publishing through the emulator and acks or nacks on a
	// stream wake waiting streams at once; the poll interval bounds how late a
	// stream sees a message whose ack deadline expired.
	DefaultMaxPollInterval = 50 * time.Millisecond
	// maxRecvMsgBytes is the largest gRPC request the server accepts. Pub/Sub
	// takes publish requests of up to 10 MB; the rest is headroom.
	maxRecvMsgBytes = 16 << 20
)

// Config configures a Server. The zero value is usable: it serves on a
// loopback port chosen by the kernel and creates no topic or subscription.
type Config struct {
	// Addr is the host:port to listen on; DefaultAddr if empty. Use a loopback
	// address unless the emulator must be reachable from another host.
	Addr string
	// Project resolves short topic and subscription IDs into full resource
	// names ("projects/<Project>/topics/<id>"); DefaultProject if empty.
	Project string
	// Topics are created when the server starts, and again after a Restart
	// that resets state. Each is a short ID or a full
	// "projects/<p>/topics/<t>" name.
	Topics []string
	// Subscriptions are created after Topics, in order.
	Subscriptions []Subscription
	// AckDeadline is the ack deadline of the Subscriptions whose own
	// AckDeadline is zero; DefaultAckDeadline if zero.
	AckDeadline time.Duration
	// MaxMessagesPerPull bounds the batch one stream takes from pstest per
	// poll; DefaultMaxMessagesPerPull if zero.
	MaxMessagesPerPull int
	// MaxResponseBytes caps the encoded size of one StreamingPullResponse;
	// DefaultMaxResponseBytes if zero. A single message larger than the cap
	// is still sent, alone in its response.
	MaxResponseBytes int
	// MinPollInterval and MaxPollInterval bound the growing wait of a stream
	// that found nothing to deliver; DefaultMinPollInterval and
	// DefaultMaxPollInterval if zero.
	MinPollInterval time.Duration
	MaxPollInterval time.Duration
	// Reactors are passed to pstest unchanged (see pstest.WithErrorInjection).
	// They act inside pstest, so they also affect the calls that the
	// emulator's StreamingPull makes on a client's behalf (Pull, Acknowledge,
	// ModifyAckDeadline). Prefer Server.InjectUnaryError, which only affects
	// calls that clients make over gRPC.
	Reactors []pstest.ServerReactorOption
	// Logger receives the emulator's logs; none are written if nil.
	Logger *zap.Logger
}

// Subscription describes a subscription created when the server starts.
type Subscription struct {
	// Name is a short subscription ID or a full
	// "projects/<p>/subscriptions/<s>" name.
	Name string
	// Topic is the short ID or full name of the subscription's topic. It must
	// be listed in Config.Topics or exist already.
	Topic string
	// AckDeadline is the subscription's ack deadline, in whole seconds from
	// 1 s to 600 s; Config.AckDeadline if zero.
	AckDeadline time.Duration
	// EnableMessageOrdering delivers messages with the same ordering key one
	// at a time, in publish order, as pstest implements it.
	EnableMessageOrdering bool
}

// TopicName returns the full resource name of topic in project. A topic that
// is already a full name ("projects/...") is returned unchanged.
func TopicName(project, topic string) string {
	if strings.HasPrefix(topic, "projects/") {
		return topic
	}
	return "projects/" + project + "/topics/" + topic
}

// SubscriptionName returns the full resource name of subscription in project.
// A subscription that is already a full name ("projects/...") is returned
// unchanged.
func SubscriptionName(project, subscription string) string {
	if strings.HasPrefix(subscription, "projects/") {
		return subscription
	}
	return "projects/" + project + "/subscriptions/" + subscription
}

// checkName reports whether name is "projects/<p>/<kind>/<id>" with non-empty,
// slash-free parts.
func checkName(name, kind string) error {
	parts := strings.Split(name, "/")
	if len(parts) != 4 || parts[0] != "projects" || parts[2] != kind || parts[1] == "" || parts[3] == "" {
		return fmt.Errorf("emulator: bad %s name %q: want projects/<project>/%s/<id>", strings.TrimSuffix(kind, "s"), name, kind)
	}
	return nil
}

// withDefaults returns cfg with its zero fields defaulted and its names
// resolved, or an error naming the first invalid field.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return cfg, fmt.Errorf("emulator: bad Addr %q: %w", cfg.Addr, err)
	}
	if cfg.Project == "" {
		cfg.Project = DefaultProject
	}
	if strings.Contains(cfg.Project, "/") {
		return cfg, fmt.Errorf("emulator: bad Project %q: contains '/'", cfg.Project)
	}
	if cfg.AckDeadline == 0 {
		cfg.AckDeadline = DefaultAckDeadline
	}
	if err := checkAckDeadline(cfg.AckDeadline); err != nil {
		return cfg, fmt.Errorf("emulator: bad AckDeadline: %w", err)
	}
	if cfg.MaxMessagesPerPull == 0 {
		cfg.MaxMessagesPerPull = DefaultMaxMessagesPerPull
	}
	if cfg.MaxMessagesPerPull < 0 {
		return cfg, fmt.Errorf("emulator: bad MaxMessagesPerPull %d: negative", cfg.MaxMessagesPerPull)
	}
	if cfg.MaxResponseBytes == 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if cfg.MaxResponseBytes < 0 {
		return cfg, fmt.Errorf("emulator: bad MaxResponseBytes %d: negative", cfg.MaxResponseBytes)
	}
	if cfg.MinPollInterval == 0 {
		cfg.MinPollInterval = DefaultMinPollInterval
	}
	if cfg.MaxPollInterval == 0 {
		cfg.MaxPollInterval = DefaultMaxPollInterval
	}
	if cfg.MinPollInterval < 0 || cfg.MaxPollInterval < cfg.MinPollInterval {
		return cfg, fmt.Errorf("emulator: bad poll intervals: min %v, max %v", cfg.MinPollInterval, cfg.MaxPollInterval)
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}

	topics := make([]string, len(cfg.Topics))
	for i, t := range cfg.Topics {
		topics[i] = TopicName(cfg.Project, t)
		if err := checkName(topics[i], "topics"); err != nil {
			return cfg, err
		}
	}
	cfg.Topics = topics
	subs := make([]Subscription, len(cfg.Subscriptions))
	for i, s := range cfg.Subscriptions {
		s.Name = SubscriptionName(cfg.Project, s.Name)
		if err := checkName(s.Name, "subscriptions"); err != nil {
			return cfg, err
		}
		if s.Topic == "" {
			return cfg, fmt.Errorf("emulator: subscription %q: no topic", s.Name)
		}
		s.Topic = TopicName(cfg.Project, s.Topic)
		if err := checkName(s.Topic, "topics"); err != nil {
			return cfg, fmt.Errorf("emulator: subscription %q: %w", s.Name, err)
		}
		if s.AckDeadline == 0 {
			s.AckDeadline = cfg.AckDeadline
		}
		if err := checkAckDeadline(s.AckDeadline); err != nil {
			return cfg, fmt.Errorf("emulator: subscription %q: %w", s.Name, err)
		}
		subs[i] = s
	}
	cfg.Subscriptions = subs
	return cfg, nil
}

// checkAckDeadline accepts whole seconds from 1 s to 600 s. Pub/Sub's own
// minimum is 10 s; shorter deadlines are allowed so that tests can watch
// redelivery without waiting.
func checkAckDeadline(d time.Duration) error {
	if d < time.Second || d > 600*time.Second || d%time.Second != 0 {
		return fmt.Errorf("ack deadline %v: want whole seconds from 1s to 600s", d)
	}
	return nil
}
