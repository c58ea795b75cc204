// Command pubsub-emulator runs the pullerd/emulator Pub/Sub emulator as a
// process, for the demo, scripts and benchmarks.
//
// It pre-creates the topics and subscriptions named by its flags, prints
// PUBSUB_EMULATOR_HOST=host:port on stdout once it serves, and runs until
// SIGINT or SIGTERM, then exits 0. Logs go to stderr.
//
//	pubsub-emulator -project demo -topic events -subscription events-sub
//	pubsub-emulator -topic a,b -subscription sa=a -subscription sb=b -addr-file /tmp/emu.addr
//
// See the emulator package documentation for what it does and does not
// emulate.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/pubsub-shm/pubsub-shm/pullerd/emulator"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// config is the command line, parsed.
type config struct {
	addr        string
	addrFile    string
	project     string
	topics      []string
	subs        []string // NAME or NAME=TOPIC
	ackDeadline time.Duration
	ordering    bool
	logLevel    zapcore.Level
}

// listFlag collects a repeatable flag whose values may also be comma lists.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			*l = append(*l, item)
		}
	}
	return nil
}

// parseFlags parses args (without the program name). It returns
// flag.ErrHelp for -h.
func parseFlags(args []string, output io.Writer) (config, error) {
	cfg := config{logLevel: zapcore.InfoLevel}
	fs := flag.NewFlagSet("pubsub-emulator", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.StringVar(&cfg.addr, "addr", emulator.DefaultAddr, "`host:port` to listen on; port 0 picks a free port. Keep it on loopback unless other hosts must connect")
	fs.StringVar(&cfg.addrFile, "addr-file", "", "write the bound host:port to this `file` once serving (atomically), and remove it on exit")
	fs.StringVar(&cfg.project, "project", emulator.DefaultProject, "`project` that short topic and subscription IDs belong to")
	fs.Var((*listFlag)(&cfg.topics), "topic", "topic to create: an ID or projects/P/topics/T; repeatable, or a comma list")
	fs.Var((*listFlag)(&cfg.subs), "subscription", "subscription to create, NAME or NAME=TOPIC (TOPIC may be omitted when there is one -topic); repeatable, or a comma list")
	fs.DurationVar(&cfg.ackDeadline, "ack-deadline", emulator.DefaultAckDeadline, "ack deadline of the created subscriptions, whole seconds from 1s to 600s")
	fs.BoolVar(&cfg.ordering, "ordering", false, "enable message ordering on the created subscriptions")
	fs.TextVar(&cfg.logLevel, "log-level", zapcore.InfoLevel, "log `level`: debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: pubsub-emulator [flags]\n\n"+
			"Serves a Pub/Sub emulator and prints PUBSUB_EMULATOR_HOST=host:port on stdout.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	return cfg, nil
}

// emulatorConfig turns the command line into the emulator's Config.
func (cfg config) emulatorConfig(log *zap.Logger) (emulator.Config, error) {
	ec := emulator.Config{
		Addr:        cfg.addr,
		Project:     cfg.project,
		AckDeadline: cfg.ackDeadline,
		Logger:      log,
	}
	for _, t := range cfg.topics {
		ec.Topics = appendNew(ec.Topics, emulator.TopicName(cfg.project, t))
	}
	for _, s := range cfg.subs {
		name, topic, hasTopic := strings.Cut(s, "=")
		switch {
		case hasTopic && topic == "":
			return ec, fmt.Errorf("-subscription %q: empty topic", s)
		case hasTopic:
			topic = emulator.TopicName(cfg.project, topic)
			ec.Topics = appendNew(ec.Topics, topic) // a topic named only here is created too
		case len(cfg.topics) == 1:
			topic = emulator.TopicName(cfg.project, cfg.topics[0])
		default:
			return ec, fmt.Errorf("-subscription %q: give its topic as NAME=TOPIC (there are %d -topic flags)", s, len(cfg.topics))
		}
		ec.Subscriptions = append(ec.Subscriptions, emulator.Subscription{
			Name:                  name,
			Topic:                 topic,
			EnableMessageOrdering: cfg.ordering,
		})
	}
	return ec, nil
}

// appendNew appends s to list unless it is there already.
func appendNew(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pubsub-emulator:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "pubsub-emulator:", err)
		os.Exit(1)
	}
}

// run serves the emulator until ctx ends. It prints
// PUBSUB_EMULATOR_HOST=host:port on stdout once serving.
func run(ctx context.Context, cfg config, stdout io.Writer) (err error) {
	log, err := newLogger(cfg.logLevel)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	ec, err := cfg.emulatorConfig(log)
	if err != nil {
		return err
	}
	if !isLoopback(cfg.addr) {
		log.Warn("listening beyond loopback: anyone who can reach this address can use the emulator, without authentication",
			zap.String("addr", cfg.addr))
	}
	srv, err := emulator.New(ec)
	if err != nil {
		return err
	}
	defer srv.Close()
	addr := srv.Addr()
	if cfg.addrFile != "" {
		if err := writeFileAtomic(cfg.addrFile, []byte(addr+"\n")); err != nil {
			return fmt.Errorf("write -addr-file: %w", err)
		}
		defer func() {
			if rerr := os.Remove(cfg.addrFile); rerr != nil && err == nil {
				err = fmt.Errorf("remove -addr-file: %w", rerr)
			}
		}()
	}
	if _, err := fmt.Fprintf(stdout, "PUBSUB_EMULATOR_HOST=%s\n", addr); err != nil {
		return fmt.Errorf("print address: %w", err)
	}
	<-ctx.Done()
	log.Info("signal received, shutting down")
	return srv.Close()
}

// newLogger returns a console logger on stderr at level.
func newLogger(level zapcore.Level) (*zap.Logger, error) {
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(level)
	zc.Encoding = "console"
	zc.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	zc.OutputPaths = []string{"stderr"}
	zc.ErrorOutputPaths = []string{"stderr"}
	zc.Sampling = nil
	log, err := zc.Build()
	if err != nil {
		return nil, fmt.Errorf("build logger: %w", err)
	}
	return log, nil
}

// isLoopback reports whether addr's host is a loopback address or localhost.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// writeFileAtomic writes data to path through a temporary file in the same
// directory and a rename, so that readers never see a partial file.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		_ = os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}
