//go:build crossproc

package daemon

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"google.golang.org/grpc/codes"

	"github.com/pubsub-shm/pubsub-shm/bench/jvm"
	"github.com/pubsub-shm/pubsub-shm/pullerd/emulator"
)

// sparkFlags are the JVM options Spark 4 needs on Java 17 (jvm-reader/pom.xml's jvm.opens).
var sparkFlags = append(append([]string{}, jvm.SparkFlags...), "-Xmx1g")

// sparkDriver is a running dev.pubsubshm.spark.sink.SinkDriver.
type sparkDriver struct {
	t      *testing.T
	stdin  io.WriteCloser
	lines  chan string
	stderr *syncBuffer
	done   chan error
}

func startSparkDriver(t *testing.T, root string) *sparkDriver {
	t.Helper()
	cmd, err := jvm.Command(sparkFlags, "dev.pubsubshm.spark.sink.SinkDriver", "--ring-root", root, "--project", project)
	if err != nil {
		t.Fatal(err)
	}
	d := &sparkDriver{t: t, lines: make(chan string, 16), stderr: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = d.stderr
	d.stdin, _ = cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			d.lines <- sc.Text()
		}
		close(d.lines)
	}()
	go func() { d.done <- cmd.Wait() }()
	t.Cleanup(func() {
		d.stdin.Close()
		select {
		case <-d.done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-d.done
		}
	})
	if line := d.await("READY", 120*time.Second); line != "READY" {
		t.Fatalf("the Spark driver did not start: %s", line)
	}
	return d
}

// syncBuffer is a bytes.Buffer safe for the process's writer and the test's reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// await reads lines until one starts with a known answer.
func (d *sparkDriver) await(what string, timeout time.Duration) string {
	d.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case line, ok := <-d.lines:
			if !ok {
				d.t.Fatalf("the Spark driver exited while waiting for %s", what)
			}
			for _, p := range []string{"READY", "OK", "FAILED", "STARTED", "BYE"} {
				if strings.HasPrefix(line, p) {
					return line
				}
			}
		case <-deadline:
			d.t.Fatalf("no answer from the Spark driver within %v waiting for %s", timeout, what)
		}
	}
}

func (d *sparkDriver) do(cmd string, timeout time.Duration) string {
	d.t.Helper()
	if _, err := fmt.Fprintln(d.stdin, cmd); err != nil {
		d.t.Fatal(err)
	}
	return d.await(cmd, timeout)
}

// wantRow is row id of SinkDriver.rows.
func wantRow(id int) (data string, attrs map[string]string, key string) {
	data = fmt.Sprintf("row-%08d|", id) + strings.Repeat(string(rune('A'+id%26)), id%200)
	if id%4 != 0 {
		attrs = map[string]string{"row": strconv.Itoa(id), "mod": strconv.Itoa(id % 10)}
	}
	if id%3 != 0 {
		key = "key-" + strconv.Itoa(id%13)
	}
	return
}

// checkRows checks that the topic holds exactly the rows 0..n-1 of SinkDriver.rows, byte
// for byte, each once, and each ordering key's rows in id order.
func checkRows(t *testing.T, msgs []*pstest.Message, topic string, n int) {
	t.Helper()
	seen := make([]bool, n)
	lastByKey := map[string]int{}
	count := 0
	for _, m := range msgs {
		if m.Topic != topic {
			continue
		}
		count++
		var id int
		if _, err := fmt.Sscanf(string(m.Data), "row-%08d|", &id); err != nil || id < 0 || id >= n {
			t.Fatalf("unexpected message %q", m.Data)
		}
		if seen[id] {
			t.Fatalf("row %d published twice", id)
		}
		seen[id] = true
		data, attrs, key := wantRow(id)
		if string(m.Data) != data {
			t.Fatalf("row %d: data %q, want %q", id, m.Data, data)
		}
		if !maps.Equal(m.Attributes, attrs) && !(len(m.Attributes) == 0 && len(attrs) == 0) {
			t.Fatalf("row %d: attributes %v, want %v", id, m.Attributes, attrs)
		}
		if m.OrderingKey != key {
			t.Fatalf("row %d: ordering key %q, want %q", id, m.OrderingKey, key)
		}
		if key != "" {
			if last, ok := lastByKey[key]; ok && last > id {
				t.Fatalf("ordering key %q: row %d was published after row %d", key, last, id)
			}
			lastByKey[key] = id
		}
	}
	if count != n {
		t.Fatalf("topic %s holds %d messages, want %d", topic, count, n)
	}
}

// TestCrossProcessSink runs a real Spark (local[2], in its own JVM) writing through an
// in-process pullerd into the emulator: 100,000 rows by a streaming query, the same by a
// batch write, transient Publish errors (retried, nothing lost), permanent ones (the query
// fails naming the cause), and a query that reads one subscription and writes another topic.
func TestCrossProcessSink(t *testing.T) {
	root := shmRoot(t)
	srv, err := emulator.New(emulator.Config{Topics: []string{"out", "out-batch", "out-retry", "in", "out-e2e"},
		Subscriptions: []emulator.Subscription{{Name: "in-sub", Topic: "in"}}, AckDeadline: 60 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cfg := Config{Dir: root, ClientOptions: srv.ClientOptions(), Partitions: 2, Streams: 2,
		Publish: PublishConfig{Backoff: ackdBackoffFast, RetryTimeout: 10 * time.Second}}
	d := startDaemon(t, cfg)
	spark := startSparkDriver(t, root)

	t.Run("stream100k", func(t *testing.T) {
		start := time.Now()
		if line := spark.do("rows out 100000 stream", 5*time.Minute); !strings.HasPrefix(line, "OK") {
			t.Fatalf("%s\nstderr:\n%s", line, tail(spark.stderr.String(), 4000))
		}
		t.Logf("100,000 rows through a streaming query in %v", time.Since(start).Round(time.Millisecond))
		checkRows(t, srv.Messages(), "projects/"+project+"/topics/out", 100000)
	})

	t.Run("batch", func(t *testing.T) {
		if line := spark.do("rows out-batch 30000 batch", 3*time.Minute); !strings.HasPrefix(line, "OK") {
			t.Fatalf("%s\nstderr:\n%s", line, tail(spark.stderr.String(), 4000))
		}
		checkRows(t, srv.Messages(), "projects/"+project+"/topics/out-batch", 30000)
	})

	t.Run("transientErrors", func(t *testing.T) {
		before := srv.Stats().UnaryErrorsInjected
		if err := srv.InjectUnaryError("Publish", codes.Unavailable, "injected: backend unavailable", 5); err != nil {
			t.Fatal(err)
		}
		if line := spark.do("rows out-retry 20000 stream", 3*time.Minute); !strings.HasPrefix(line, "OK") {
			t.Fatalf("%s\nstderr:\n%s", line, tail(spark.stderr.String(), 4000))
		}
		if err := srv.InjectUnaryError("Publish", codes.ResourceExhausted, "injected: quota exceeded", 5); err != nil {
			t.Fatal(err)
		}
		if err := srv.CreateTopic(context.Background(), "out-retry-2"); err != nil {
			t.Fatal(err)
		}
		if line := spark.do("rows out-retry-2 20000 batch", 3*time.Minute); !strings.HasPrefix(line, "OK") {
			t.Fatalf("%s\nstderr:\n%s", line, tail(spark.stderr.String(), 4000))
		}
		if n := srv.Stats().UnaryErrorsInjected - before; n != 10 {
			t.Fatalf("%d injected Publish errors were hit, want 10", n)
		}
		msgs := srv.Messages()
		checkRows(t, msgs, "projects/"+project+"/topics/out-retry", 20000)
		checkRows(t, msgs, "projects/"+project+"/topics/out-retry-2", 20000)
		if r := metricLabel(t, d.metrics, "pullerd_publish_retries_total", `code="ResourceExhausted"`); r < 1 {
			t.Fatal("no RESOURCE_EXHAUSTED retry counted")
		}
	})

	t.Run("permanentErrors", func(t *testing.T) {
		line := spark.do("rows missing-topic 5000 stream", 3*time.Minute)
		if !strings.HasPrefix(line, "FAILED") || !strings.Contains(line, "publishing to projects/"+project+"/topics/missing-topic failed") ||
			!strings.Contains(line, "NOT_FOUND") {
			t.Fatalf("writing to a missing topic: %s", line)
		}
		if err := srv.InjectUnaryError("Publish", codes.PermissionDenied, "injected: caller lacks pubsub.topics.publish", emulator.Forever); err != nil {
			t.Fatal(err)
		}
		line = spark.do("rows out 100 batch", 3*time.Minute)
		srv.ClearUnaryErrors()
		if !strings.HasPrefix(line, "FAILED") || !strings.Contains(line, "PERMISSION_DENIED") || !strings.Contains(line, "caller lacks pubsub.topics.publish") {
			t.Fatalf("writing without permission: %s", line)
		}
	})

	t.Run("endToEnd", func(t *testing.T) {
		const n = 20000
		want := map[string]*pb.PubsubMessage{}
		for lo := 0; lo < n; lo += 1000 {
			var batch []*pb.PubsubMessage
			for i := lo; i < lo+1000; i++ {
				m := &pb.PubsubMessage{Data: []byte(fmt.Sprintf("in-%06d|%s", i, strings.Repeat("z", i%50))),
					Attributes: map[string]string{"i": strconv.Itoa(i)}}
				if i%2 == 0 {
					m.OrderingKey = "k" + strconv.Itoa(i%5)
				}
				batch = append(batch, m)
			}
			copies := make([]*pb.PubsubMessage, len(batch))
			for i, m := range batch {
				copies[i] = &pb.PubsubMessage{Data: bytes.Clone(m.Data), Attributes: maps.Clone(m.Attributes), OrderingKey: m.OrderingKey}
			}
			ids, err := srv.Publish(context.Background(), "in", batch...)
			if err != nil {
				t.Fatal(err)
			}
			for i, id := range ids {
				want[id] = copies[i]
			}
		}
		if line := spark.do("e2e in-sub out-e2e", 2*time.Minute); line != "STARTED" {
			t.Fatalf("%s\nstderr:\n%s", line, tail(spark.stderr.String(), 4000))
		}
		topic := "projects/" + project + "/topics/out-e2e"
		deadline := time.Now().Add(3 * time.Minute)
		for {
			got := 0
			for _, m := range srv.Messages() {
				if m.Topic == topic {
					got++
				}
			}
			if got >= n {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d messages reached %s in 3 minutes\nstderr:\n%s", got, n, topic, tail(spark.stderr.String(), 4000))
			}
			time.Sleep(200 * time.Millisecond)
		}
		if line := spark.do("stop", time.Minute); line != "OK" {
			t.Fatal(line)
		}
		seen := map[string]bool{}
		for _, m := range srv.Messages() {
			if m.Topic != topic {
				continue
			}
			src := m.Attributes["src_id"]
			w := want[src]
			if w == nil {
				t.Fatalf("message %q names an unknown source message %q", m.Data, src)
			}
			if seen[src] {
				t.Fatalf("source message %s written twice", src)
			}
			seen[src] = true
			if string(m.Data) != "e2e:"+string(w.Data) || m.OrderingKey != w.OrderingKey || m.Attributes["i"] != w.Attributes["i"] || len(m.Attributes) != 2 {
				t.Fatalf("message %q %v key %q, from %q %v key %q", m.Data, m.Attributes, m.OrderingKey, w.Data, w.Attributes, w.OrderingKey)
			}
		}
		if len(seen) != n {
			t.Fatalf("%d distinct source messages written, want %d", len(seen), n)
		}
	})

	if line := spark.do("quit", time.Minute); line != "BYE" {
		t.Fatal(line)
	}
	// Every writer detached and removed its rings.
	waitGone(t, root)
	if _, err := os.Stat(root + "/" + TopicsDirName); !os.IsNotExist(err) {
		t.Fatal("writer rings left behind")
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
