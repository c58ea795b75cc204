package emulator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"go.uber.org/zap"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// ErrClosed is returned by the methods of a Server that was closed.
var ErrClosed = errors.New("emulator: server closed")

// Server is a Pub/Sub emulator: pstest's state and RPCs behind a gRPC server
// whose StreamingPull delivers in batches (see the package documentation).
//
// A Server is safe for concurrent use. It serves from New until Close; all its
// goroutines have ended when Close returns.
type Server struct {
	cfg       Config
	log       *zap.Logger
	faults    faults
	stats     counters
	published broadcast // closed and renewed on every successful publish

	lifeMu sync.Mutex // serialises Restart and Close; held while (re)starting

	mu      sync.RWMutex // guards the fields below
	backend *backend
	gsrv    *grpc.Server // nil while not serving
	addr    string
	closed  bool

	streamsMu sync.Mutex
	streams   map[*stream]struct{}
	nextID    uint64
	perSub    map[string]*subStreams // StreamStats by full subscription name; survives Restart

	wg sync.WaitGroup // the Serve goroutine and every stream's receive goroutine

	msgsMu sync.Mutex // serialises pstest's Messages and Message, which write shared fields
}

// backend is one pstest state: its fake and the modacks that the emulator
// itself sent on its behalf. Restart with ResetState replaces it.
type backend struct {
	fake     *pstest.Server
	internal *modackLog
}

// New starts an emulator: it creates a fresh pstest state, creates
// cfg.Topics and cfg.Subscriptions in it, listens on cfg.Addr and serves
// until Close. The address it listens on is Addr.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	b, err := newBackend(ctx, cfg)
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		b.close()
		return nil, fmt.Errorf("emulator: listen on %s: %w", cfg.Addr, err)
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		backend: b,
		addr:    lis.Addr().String(),
		streams: map[*stream]struct{}{},
	}
	s.serve(lis)
	s.log.Info("pubsub emulator serving", zap.String("addr", s.addr),
		zap.Strings("topics", cfg.Topics), zap.Int("subscriptions", len(cfg.Subscriptions)))
	return s, nil
}

// newBackend creates a pstest state holding cfg's topics and subscriptions.
func newBackend(ctx context.Context, cfg Config) (*backend, error) {
	fake, err := newFake(ctx, cfg.Reactors)
	if err != nil {
		return nil, err
	}
	b := &backend{fake: fake, internal: newModackLog()}
	for _, t := range cfg.Topics {
		if _, err := fake.GServer.CreateTopic(ctx, &pb.Topic{Name: t}); err != nil {
			b.close()
			return nil, fmt.Errorf("emulator: create topic %q: %w", t, err)
		}
	}
	for _, sub := range cfg.Subscriptions {
		if err := b.createSubscription(ctx, sub); err != nil {
			b.close()
			return nil, err
		}
	}
	return b, nil
}

// newFake creates a pstest server and stops pstest's own gRPC listener: the
// emulator serves pstest's GServer from its own gRPC server. pstest cannot
// be built without a listener; it listens on a loopback port for the few
// milliseconds this takes.
func newFake(ctx context.Context, reactors []pstest.ServerReactorOption) (fake *pstest.Server, err error) {
	defer func() {
		// pstest panics when it cannot listen.
		if r := recover(); r != nil {
			err = fmt.Errorf("emulator: start pstest: %v", r)
		}
	}()
	fake = pstest.NewServerWithAddress("127.0.0.1:0", reactors...)
	// pstest serves in a goroutine of its own and logs an error if it is
	// stopped before that goroutine started serving; one round trip proves
	// it did.
	conn, err := grpc.NewClient(fake.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		_ = fake.Close()
		return nil, fmt.Errorf("emulator: connect to pstest: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// Any answer, even an error injected by a reactor, shows that pstest serves.
	_, _ = pb.NewPublisherClient(conn).ListTopics(ctx, &pb.ListTopicsRequest{Project: "projects/-"}, grpc.WaitForReady(true))
	_ = conn.Close()
	// No subscription exists yet, so this stops nothing but pstest's gRPC
	// server; backend.close calls Close again to stop the subscriptions.
	_ = fake.Close()
	return fake, nil
}

// createSubscription creates sub (whose names are already resolved).
func (b *backend) createSubscription(ctx context.Context, sub Subscription) error {
	_, err := b.fake.GServer.CreateSubscription(ctx, &pb.Subscription{
		Name:                  sub.Name,
		Topic:                 sub.Topic,
		AckDeadlineSeconds:    int32(sub.AckDeadline / time.Second),
		EnableMessageOrdering: sub.EnableMessageOrdering,
	})
	if err != nil {
		return fmt.Errorf("emulator: create subscription %q on %q: %w", sub.Name, sub.Topic, err)
	}
	return nil
}

// close stops the pstest state's goroutines and waits for them.
func (b *backend) close() {
	_ = b.fake.Close()
	b.fake.Wait()
}

// serve starts a gRPC server for the current backend on lis.
func (s *Server) serve(lis net.Listener) {
	s.mu.Lock()
	b := s.backend
	gsrv := grpc.NewServer(
		grpc.MaxRecvMsgSize(maxRecvMsgBytes),
		grpc.WaitForHandlers(true),
		grpc.ChainUnaryInterceptor(s.faults.unaryInterceptor(&s.stats, s.log)),
	)
	svc := &service{GServer: &b.fake.GServer, srv: s, b: b}
	pb.RegisterPublisherServer(gsrv, svc)
	pb.RegisterSubscriberServer(gsrv, svc)
	pb.RegisterSchemaServiceServer(gsrv, svc)
	s.gsrv = gsrv
	s.mu.Unlock()

	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := gsrv.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.log.Error("pubsub emulator: serve", zap.Error(err))
		}
	}()
}

// stopServing stops the gRPC server, which ends every RPC, and waits for the
// emulator's goroutines. Callers hold lifeMu.
func (s *Server) stopServing() {
	s.mu.Lock()
	gsrv := s.gsrv
	s.gsrv = nil
	s.mu.Unlock()
	if gsrv != nil {
		gsrv.Stop()
	}
	s.wg.Wait()
}

// Addr returns the host:port the server listens on, for example
// "127.0.0.1:38711". It stays the same across Restart. Clients reach the
// emulator with PUBSUB_EMULATOR_HOST set to it, or with Dial or
// ClientOptions.
func (s *Server) Addr() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.addr
}

// Project returns the project that short topic and subscription IDs resolve
// against.
func (s *Server) Project() string { return s.cfg.Project }

// Dial returns a plaintext gRPC connection to the server. The caller closes it.
func (s *Server) Dial(opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)
	conn, err := grpc.NewClient(s.Addr(), opts...)
	if err != nil {
		return nil, fmt.Errorf("emulator: dial %s: %w", s.Addr(), err)
	}
	return conn, nil
}

// ClientOptions returns the options that point a Google Cloud client
// (pubsub.NewClient, apiv1.NewSubscriptionAdminClient, ...) at the server,
// as PUBSUB_EMULATOR_HOST would: the endpoint, no TLS, no authentication.
func (s *Server) ClientOptions() []option.ClientOption {
	return []option.ClientOption{
		option.WithEndpoint(s.Addr()),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithoutAuthentication(),
		option.WithTelemetryDisabled(),
	}
}

// current returns the current backend, or ErrClosed.
func (s *Server) current() (*backend, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	return s.backend, nil
}

// Fake returns the pstest server that holds the emulator's current state, for
// pstest features this package does not wrap (SetTimeNowFunc,
// AddPublishResponse, SetAutoPublishResponse, ...). It is replaced by a
// Restart that resets state and is closed by Close.
//
// Its Addr field names pstest's own listener, which the emulator closes at
// once: connect to Server.Addr instead. Its Messages and Message methods write
// fields that the emulator's Messages and Message read; use the emulator's.
func (s *Server) Fake() *pstest.Server {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.backend.fake
}

// Messages returns a snapshot of every message published since the server
// started (or since the last ClearMessages or state-resetting Restart), in
// publish order, with its delivery, ack and modack counts as pstest records
// them. Deliveries counts every delivery by Pull or StreamingPull, Acks every
// accepted ack, and Modacks the ModifyAckDeadline calls and the modacks sent
// on StreamingPull streams by clients; the modacks the emulator sends itself
// to apply a stream's ack deadline are left out.
//
// The returned messages are copies owned by the caller; their Data and
// Attributes are shared with the server and must not be modified.
func (s *Server) Messages() []*pstest.Message {
	b := s.lastBackend()
	s.msgsMu.Lock()
	defer s.msgsMu.Unlock()
	msgs := b.fake.Messages()
	out := make([]*pstest.Message, len(msgs))
	b.internal.mu.Lock()
	defer b.internal.mu.Unlock()
	for i, m := range msgs {
		out[i] = b.internal.snapshotLocked(m)
	}
	return out
}

// Message returns a snapshot of the message with the given ID as Messages
// describes it, or nil if no such message was published.
func (s *Server) Message(id string) *pstest.Message {
	b := s.lastBackend()
	s.msgsMu.Lock()
	defer s.msgsMu.Unlock()
	m := b.fake.Message(id)
	if m == nil {
		return nil
	}
	b.internal.mu.Lock()
	defer b.internal.mu.Unlock()
	return b.internal.snapshotLocked(m)
}

// lastBackend returns the current backend, even after Close, so that tests
// can inspect messages once the server stopped.
func (s *Server) lastBackend() *backend {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.backend
}

// ClearMessages forgets every published message, including those not yet
// delivered or acked, as pstest.Server.ClearMessages does.
func (s *Server) ClearMessages() {
	b, err := s.current()
	if err != nil {
		return
	}
	s.msgsMu.Lock()
	defer s.msgsMu.Unlock()
	b.fake.ClearMessages()
	b.internal.clear()
}

// Wait blocks until all server activity has ended, that is until Close has
// returned (as pstest.Server.Wait, which blocks until its Close).
func (s *Server) Wait() {
	s.lastBackend().fake.Wait()
	s.wg.Wait()
}

// CreateTopic creates a topic; topic is a short ID or a full name.
func (s *Server) CreateTopic(ctx context.Context, topic string) error {
	b, err := s.current()
	if err != nil {
		return err
	}
	name := TopicName(s.cfg.Project, topic)
	if err := checkName(name, "topics"); err != nil {
		return err
	}
	if _, err := b.fake.GServer.CreateTopic(ctx, &pb.Topic{Name: name}); err != nil {
		return fmt.Errorf("emulator: create topic %q: %w", name, err)
	}
	return nil
}

// CreateSubscription creates a subscription as Config.Subscriptions
// describes it. It is not re-created by a Restart that resets state.
func (s *Server) CreateSubscription(ctx context.Context, sub Subscription) error {
	b, err := s.current()
	if err != nil {
		return err
	}
	cfg := Config{Project: s.cfg.Project, AckDeadline: s.cfg.AckDeadline, Subscriptions: []Subscription{sub}, Addr: DefaultAddr}
	cfg, err = cfg.withDefaults()
	if err != nil {
		return err
	}
	return b.createSubscription(ctx, cfg.Subscriptions[0])
}

// Publish publishes msgs to topic (a short ID or a full name) as the Publish
// RPC would, and returns their message IDs. It takes ownership of msgs: pstest
// sets their MessageId and PublishTime and keeps them.
func (s *Server) Publish(ctx context.Context, topic string, msgs ...*pb.PubsubMessage) ([]string, error) {
	b, err := s.current()
	if err != nil {
		return nil, err
	}
	name := TopicName(s.cfg.Project, topic)
	res, err := b.fake.GServer.Publish(ctx, &pb.PublishRequest{Topic: name, Messages: msgs})
	if err != nil {
		return nil, fmt.Errorf("emulator: publish %d messages to %q: %w", len(msgs), name, err)
	}
	s.published.notify()
	return res.MessageIds, nil
}

// RestartOptions configures Restart.
type RestartOptions struct {
	// ResetState replaces pstest's state by a fresh one holding only the
	// topics and subscriptions of the Config: every message, every
	// subscription created later and every delivery record is lost, as when
	// Google's emulator process restarts. Without it the state survives, as
	// the real service's does, and only connections and streams are cut.
	ResetState bool
	// Downtime is how long the port stays closed between the stop and the
	// restart; clients that connect meanwhile get UNAVAILABLE.
	Downtime time.Duration
}

// Restart stops serving, which ends every open stream and connection (clients
// see UNAVAILABLE or CANCELLED), optionally resets the state, and serves again
// on the same address. Fault injection settings and Stats carry over.
//
// If Restart fails (a fresh state cannot be built, or the address cannot be
// bound again before ctx ends), it returns the error and the server stays
// stopped until a later Restart succeeds; Close still releases everything.
func (s *Server) Restart(ctx context.Context, opts RestartOptions) error {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if _, err := s.current(); err != nil {
		return err
	}
	s.stopServing()
	addr := s.Addr()
	s.log.Info("pubsub emulator restarting", zap.String("addr", addr),
		zap.Bool("reset_state", opts.ResetState), zap.Duration("downtime", opts.Downtime))
	if opts.ResetState {
		nb, err := newBackend(ctx, s.cfg)
		if err != nil {
			return fmt.Errorf("emulator: restart: %w", err)
		}
		s.mu.Lock()
		old := s.backend
		s.backend = nb
		s.mu.Unlock()
		old.close()
	}
	if opts.Downtime > 0 {
		t := time.NewTimer(opts.Downtime)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("emulator: restart: %w", ctx.Err())
		case <-t.C:
		}
	}
	lis, err := listenAgain(ctx, addr)
	if err != nil {
		return fmt.Errorf("emulator: restart: %w", err)
	}
	s.serve(lis)
	s.log.Info("pubsub emulator serving again", zap.String("addr", addr))
	return nil
}

// listenAgain listens on addr, retrying while the port is still in use.
func listenAgain(ctx context.Context, addr string) (net.Listener, error) {
	for {
		lis, err := net.Listen("tcp", addr)
		if err == nil {
			return lis, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("listen on %s: %w", addr, err)
		}
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("listen on %s: %w (last error: %v)", addr, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// Close stops the server: it ends every RPC and stream, closes the listener
// and pstest's state, and waits for every goroutine the emulator started.
// Messages and Message still answer afterwards, from the last state. Close
// is idempotent and always returns nil.
func (s *Server) Close() error {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.stopServing()
	s.lastBackend().close()
	s.log.Info("pubsub emulator closed", zap.String("addr", s.Addr()))
	return nil
}
