package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/pubsub-shm/pubsub-shm/pullerd/emulator"
	"go.uber.org/zap"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestCommandEndToEnd builds the command, runs it as a process, publishes and
// pulls a message through it, and stops it with SIGTERM.
func TestCommandEndToEnd(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "pubsub-emulator")
	build := exec.Command(goTool, "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	addrFile := filepath.Join(dir, "emulator.addr")
	cmd := exec.Command(bin, "-project", "e2e", "-topic", "t", "-subscription", "s",
		"-ack-deadline", "20s", "-addr-file", addrFile, "-log-level", "debug")
	var stderr syncBuffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("emulator stderr:\n%s", stderr.String())
		}
	}()

	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
		exited <- cmd.Wait()
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(30 * time.Second):
		t.Fatal("no PUBSUB_EMULATOR_HOST line in 30 s")
	}
	addr, ok := strings.CutPrefix(line, "PUBSUB_EMULATOR_HOST=")
	if !ok {
		t.Fatalf("first stdout line %q, want PUBSUB_EMULATOR_HOST=host:port", line)
	}
	if host, _, err := net.SplitHostPort(addr); err != nil || host != "127.0.0.1" {
		t.Fatalf("address %q: want 127.0.0.1:port (%v)", addr, err)
	}
	if data, err := os.ReadFile(addrFile); err != nil || string(data) != addr+"\n" {
		t.Fatalf("-addr-file holds %q (%v), want %q", data, err, addr+"\n")
	}

	t.Setenv("PUBSUB_EMULATOR_HOST", addr)
	client, err := pubsub.NewClient(ctx, "e2e")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	pub := client.Publisher("t")
	id, err := pub.Publish(ctx, &pubsub.Message{Data: []byte("through the process"), Attributes: map[string]string{"a": "1"}}).Get(ctx)
	pub.Stop()
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	sub := "projects/e2e/subscriptions/s"
	got, err := client.SubscriptionAdminClient.GetSubscription(ctx, &pb.GetSubscriptionRequest{Subscription: sub})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetTopic() != "projects/e2e/topics/t" || got.GetAckDeadlineSeconds() != 20 {
		t.Fatalf("subscription: topic %s, ack deadline %d s; want projects/e2e/topics/t, 20 s", got.GetTopic(), got.GetAckDeadlineSeconds())
	}
	sctx, stopStream := context.WithCancel(ctx)
	defer stopStream()
	stream, err := client.SubscriptionAdminClient.StreamingPull(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pb.StreamingPullRequest{Subscription: sub, StreamAckDeadlineSeconds: 30}); err != nil {
		t.Fatal(err)
	}
	res, err := stream.Recv()
	if err != nil {
		t.Fatalf("StreamingPull: %v", err)
	}
	msgs := res.GetReceivedMessages()
	if len(msgs) != 1 || msgs[0].GetMessage().GetMessageId() != id ||
		string(msgs[0].GetMessage().GetData()) != "through the process" || msgs[0].GetMessage().GetAttributes()["a"] != "1" {
		t.Fatalf("received %v, want the published message %s", msgs, id)
	}
	if err := client.SubscriptionAdminClient.Acknowledge(ctx, &pb.AcknowledgeRequest{Subscription: sub, AckIds: []string{msgs[0].GetAckId()}}); err != nil {
		t.Fatalf("Acknowledge: %v", err)
	}
	stopStream()

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("emulator exited with %v after SIGTERM, want status 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("emulator still running 30 s after SIGTERM")
	}
	if _, err := os.Stat(addrFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("-addr-file left behind after exit: %v", err)
	}
}

// TestParseFlags checks repeatable and comma-separated flags and the
// subscription-to-topic rules.
func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags([]string{"-project", "p", "-topic", "a, b", "-topic", "c",
		"-subscription", "sa=a,sx=projects/q/topics/x", "-subscription", "sc=c", "-ordering", "-ack-deadline", "30s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := cfg.emulatorConfig(zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	wantTopics := []string{"projects/p/topics/a", "projects/p/topics/b", "projects/p/topics/c", "projects/q/topics/x"}
	if !reflect.DeepEqual(ec.Topics, wantTopics) {
		t.Errorf("topics %v, want %v", ec.Topics, wantTopics)
	}
	wantSubs := []emulator.Subscription{
		{Name: "sa", Topic: "projects/p/topics/a", EnableMessageOrdering: true},
		{Name: "sx", Topic: "projects/q/topics/x", EnableMessageOrdering: true},
		{Name: "sc", Topic: "projects/p/topics/c", EnableMessageOrdering: true},
	}
	if !reflect.DeepEqual(ec.Subscriptions, wantSubs) {
		t.Errorf("subscriptions %+v, want %+v", ec.Subscriptions, wantSubs)
	}
	if ec.AckDeadline != 30*time.Second || ec.Project != "p" || ec.Addr != emulator.DefaultAddr {
		t.Errorf("config %+v", ec)
	}

	cfg, err = parseFlags([]string{"-topic", "only", "-subscription", "s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if ec, err := cfg.emulatorConfig(zap.NewNop()); err != nil || ec.Subscriptions[0].Topic != emulator.TopicName(emulator.DefaultProject, "only") {
		t.Errorf("a lone topic is not the default topic: %+v, %v", ec.Subscriptions, err)
	}

	for _, args := range [][]string{
		{"-topic", "a", "-topic", "b", "-subscription", "s"},
		{"-subscription", "s"},
		{"-subscription", "s="},
	} {
		cfg, err := parseFlags(args, io.Discard)
		if err == nil {
			_, err = cfg.emulatorConfig(zap.NewNop())
		}
		if err == nil {
			t.Errorf("%q accepted", args)
		}
	}
	if _, err := parseFlags([]string{"extra"}, io.Discard); err == nil {
		t.Error("positional argument accepted")
	}
	if _, err := parseFlags([]string{"-log-level", "loud"}, io.Discard); err == nil {
		t.Error("bad log level accepted")
	}
	if _, err := parseFlags([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v, want flag.ErrHelp", err)
	}
}

// TestRunStopsWithContext runs the command in-process and checks that it
// serves, prints its address, and returns nil when its context ends.
func TestRunStopsWithContext(t *testing.T) {
	cfg, err := parseFlags([]string{"-topic", "t", "-subscription", "s", "-log-level", "error"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, w := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, cfg, w)
		_ = w.Close()
	}()
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimSpace(strings.TrimPrefix(line, "PUBSUB_EMULATOR_HOST="))
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	_ = conn.Close()
	go func() { _, _ = io.Copy(io.Discard, r) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run still running 20 s after its context ended")
	}
}

// TestRunRefusesBadAddress checks that a listen error is returned, not fatal.
func TestRunRefusesBadAddress(t *testing.T) {
	cfg, err := parseFlags([]string{"-addr", "256.0.0.1:0", "-log-level", "error"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), cfg, io.Discard); err == nil {
		t.Fatal("run listened on 256.0.0.1")
	}
}
