package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	apiv1 "cloud.google.com/go/pubsub/v2/apiv1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"google.golang.org/api/option"
	"google.golang.org/grpc"

	"github.com/pubsub-shm/pubsub-shm/ringbuf"
)

// maxRecvMsgBytes lets the client read StreamingPull responses of up to 20 MB, as Pub/Sub's
// own clients do (gRPC's default is 4 MB).
const maxRecvMsgBytes = 20 << 20

// Daemon is a running pullerd. It is created and run by Run.
type Daemon struct {
	cfg         Config
	log         *zap.Logger
	client      *apiv1.SubscriptionAdminClient
	reg         *prometheus.Registry
	metricsAddr string
	ctl         *control
	pub         *publishing

	mu      sync.Mutex
	subs    map[string]*subscription // by full name
	closing bool
}

// Run runs pullerd until ctx ends, then shuts down cleanly: streams stop, committed batches
// are acked, everything else is nacked (Pub/Sub redelivers it at once), and the ring sets,
// sockets and address files are removed. It returns nil after a clean shutdown and an
// error naming what to fix when pullerd cannot start.
func Run(ctx context.Context, cfg Config) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return fmt.Errorf("pullerd: config: %w", err)
	}
	d := &Daemon{cfg: cfg, log: cfg.Log, reg: prometheus.NewRegistry(), subs: map[string]*subscription{}}
	d.ctl = &control{d: d, log: cfg.Log, lns: map[*listener]struct{}{}, conns: map[net.Conn]struct{}{}}
	d.pub = newPublishing(d)
	if err := ringbuf.EnsureDir(cfg.Dir); err != nil {
		return fmt.Errorf("pullerd: ring root %q (set -shm-dir or PUBSUB_SHM_DIR): %w", cfg.Dir, err)
	}

	opts := append([]option.ClientOption{
		option.WithGRPCDialOption(grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvMsgBytes))),
	}, cfg.ClientOptions...)
	d.client, err = apiv1.NewSubscriptionAdminClient(context.Background(), opts...)
	if err != nil {
		return fmt.Errorf("pullerd: Pub/Sub client (check credentials, or PUBSUB_EMULATOR_HOST for an emulator): %w", err)
	}
	defer d.client.Close()

	d.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mln, err := net.Listen("tcp", cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("pullerd: metrics listener on %s (choose another -metrics-addr): %w", cfg.MetricsAddr, err)
	}
	d.metricsAddr = mln.Addr().String()
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{Registry: d.reg}))
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	hsDone := make(chan struct{})
	go func() {
		defer close(hsDone)
		if err := hs.Serve(mln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("metrics server stopped", zap.Error(err))
		}
	}()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
		<-hsDone
	}()

	rootSock := filepath.Join(cfg.Dir, ControlSocketName)
	rootAddr := filepath.Join(cfg.Dir, MetricsAddrName)
	rootLn, err := d.ctl.listen(rootSock, nil)
	if err != nil {
		return fmt.Errorf("pullerd: %w", err)
	}
	defer func() {
		d.shutdown()
		_ = os.Remove(rootAddr)
		_ = os.Remove(rootSock)
		_ = os.Remove(cfg.Dir) // only if empty: other users of the root keep it
		d.log.Info("pullerd stopped")
	}()
	_ = rootLn
	d.pub.removeStale()
	if err := os.WriteFile(rootAddr, []byte(d.metricsAddr+"\n"), 0o600); err != nil {
		return fmt.Errorf("pullerd: write %q: %w", rootAddr, err)
	}
	for _, sub := range cfg.Subscriptions {
		if _, err := d.attach(sub, streamsUnset); err != nil {
			return fmt.Errorf("pullerd: %w", err)
		}
	}
	d.log.Info("pullerd serving", zap.String("control_socket", rootSock), zap.String("metrics_addr", d.metricsAddr),
		zap.String("dir", cfg.Dir), zap.Int("partitions", cfg.Partitions), zap.Int("streams", cfg.streamsFor(cfg.Partitions)))
	if cfg.Ready != nil {
		cfg.Ready(rootSock, d.metricsAddr)
	}
	<-ctx.Done()
	d.log.Info("pullerd shutting down", zap.NamedError("cause", context.Cause(ctx)))
	return nil
}

// streamsUnset is attach's streams argument when the request did not name a number.
const streamsUnset = -1

// attach starts a subscription, or returns the status of one already attached. streams is
// the number of streams the request asked for (0: pullerd's own number; see
// Config.streamsWanted), or streamsUnset: pullerd's own number for a new subscription, no
// change for an attached one. An attached subscription asked for another number of streams
// is resized.
func (d *Daemon) attach(sub Sub, streams int) (RingSetStatus, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closing {
		return RingSetStatus{}, errors.New("pullerd is shutting down")
	}
	if s, ok := d.subs[sub.FullName()]; ok {
		if sub.Partitions != 0 && sub.Partitions != len(s.parts) {
			return RingSetStatus{}, fmt.Errorf("subscription %s is already attached with %d partitions, not %d",
				sub.FullName(), len(s.parts), sub.Partitions)
		}
		if streams != streamsUnset {
			s.resizeStreams(streams)
		}
		return s.status(), nil
	}
	s, err := d.startSub(sub, max(streams, 0))
	if err != nil {
		return RingSetStatus{}, fmt.Errorf("attach %s: %w", sub.FullName(), err)
	}
	d.subs[sub.FullName()] = s
	return s.status(), nil
}

// lookup returns an attached subscription by full name, or nil.
func (d *Daemon) lookup(name string) *subscription {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.subs[name]
}

// statusAll returns the status of every attached subscription, by name.
func (d *Daemon) statusAll() []RingSetStatus {
	d.mu.Lock()
	subs := make([]*subscription, 0, len(d.subs))
	for _, s := range d.subs {
		subs = append(subs, s)
	}
	d.mu.Unlock()
	sort.Slice(subs, func(i, j int) bool { return subs[i].sub.FullName() < subs[j].sub.FullName() })
	out := make([]RingSetStatus, 0, len(subs))
	for _, s := range subs {
		out = append(out, s.status())
	}
	return out
}

// shutdown stops the control sockets and every subscription, in parallel.
func (d *Daemon) shutdown() {
	d.mu.Lock()
	d.closing = true
	subs := make([]*subscription, 0, len(d.subs))
	for _, s := range d.subs {
		subs = append(subs, s)
	}
	d.mu.Unlock()
	d.ctl.closeAll()
	var wg sync.WaitGroup
	for _, s := range subs {
		wg.Add(1)
		go func() { defer wg.Done(); s.stop() }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); d.pub.shutdown() }()
	wg.Wait()
}
