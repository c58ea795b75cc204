package daemon

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/pubsub-shm/pubsub-shm/ackd"
	"github.com/pubsub-shm/pubsub-shm/pullerd/emulator"
	"github.com/pubsub-shm/pubsub-shm/pullerd/internal/outbatch"
	"github.com/pubsub-shm/pubsub-shm/ringbuf"
)

// outMsg is one row of an OUTBOUND batch.
type outMsg = outbatch.Row

// encodeOutbound encodes rows with the reference encoder (arrow-go's IPC writer).
func encodeOutbound(t testing.TB, rows []outMsg) (meta, body []byte) {
	t.Helper()
	meta, body, err := outbatch.Encode(rows)
	if err != nil {
		t.Fatal(err)
	}
	return meta, body
}

// fakeJVM stands in for the JVM side of a writer ring pair.
type fakeJVM struct {
	t       testing.TB
	st      WriterStatus
	out     *ringbuf.Ring
	res     *ringbuf.Ring
	w       *ringbuf.Writer
	rd      *ringbuf.Reader
	results []testResult
}

type testResult struct {
	BatchID, Rows, Published, Status, Attempts int64
	InstanceID                                 uint64
	Bytes                                      int64
	Err                                        string
}

func attachTopic(t testing.TB, sock, req string) *fakeJVM {
	t.Helper()
	resp := ctlReq(t, sock, req)
	if !resp.OK || resp.Writer == nil {
		t.Fatalf("attach_topic %s: %+v", req, resp)
	}
	out, err := ringbuf.Open(resp.Writer.Outbound.File, ringbuf.OpenOptions{Kind: ringbuf.KindOutbound})
	if err != nil {
		t.Fatal(err)
	}
	res, err := ringbuf.Open(resp.Writer.Results.File, ringbuf.OpenOptions{Kind: ringbuf.KindData})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Schema(), mustSchema(t)) {
		t.Fatal("OUTBOUND ring header does not carry the OUTBOUND schema")
	}
	w, _ := ringbuf.NewWriter(out)
	rd, _ := ringbuf.NewReader(res)
	j := &fakeJVM{t: t, st: *resp.Writer, out: out, res: res, w: w, rd: rd}
	t.Cleanup(func() { out.Close(); res.Close() })
	return j
}

func mustSchema(t testing.TB) []byte {
	s, err := outbatch.SchemaMessage()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// write puts one batch into the OUTBOUND ring and returns its batch id.
func (j *fakeJVM) write(rows []outMsg) int64 {
	j.t.Helper()
	meta, body := encodeOutbound(j.t, rows)
	return j.writeRaw(meta, body, int32(len(rows)))
}

func (j *fakeJVM) writeRaw(meta, body []byte, rows int32) int64 {
	j.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := j.w.Claim(ctx, ringbuf.TypeArrow, len(meta), len(body), nil)
	if err != nil {
		j.t.Fatal(err)
	}
	copy(c.Meta(), meta)
	copy(c.Body(), body)
	id, err := c.Commit(rows)
	if err != nil {
		j.t.Fatal(err)
	}
	return id
}

// await reads results until n batches are answered (or the timeout passes).
func (j *fakeJVM) await(n int, timeout time.Duration) []testResult {
	j.t.Helper()
	deadline := time.Now().Add(timeout)
	for len(j.results) < n {
		rec, ok, err := j.rd.Poll()
		if err != nil {
			j.t.Fatal(err)
		}
		if !ok {
			if time.Now().After(deadline) {
				j.t.Fatalf("%d of %d results after %v", len(j.results), n, timeout)
			}
			j.w.Heartbeat()
			time.Sleep(time.Millisecond)
			continue
		}
		b := rec.Body
		le := binary.LittleEndian
		r := testResult{BatchID: int64(le.Uint64(b[ResBatchIDOffset:])), InstanceID: le.Uint64(b[ResInstanceIDOffset:]),
			Rows: int64(int32(le.Uint32(b[ResRowsOffset:]))), Published: int64(int32(le.Uint32(b[ResPublishedOffset:]))),
			Status: int64(int32(le.Uint32(b[ResStatusOffset:]))), Attempts: int64(int32(le.Uint32(b[ResAttemptsOffset:]))),
			Bytes: int64(le.Uint64(b[ResBytesOffset:]))}
		el := int(le.Uint32(b[ResErrorLengthOffset:]))
		r.Err = string(b[ResultLength : ResultLength+el])
		if r.InstanceID != j.out.InstanceID() || int64(rec.RowCount) != r.Rows {
			j.t.Fatalf("result %+v does not match the ring (instance %d, record rows %d)", r, j.out.InstanceID(), rec.RowCount)
		}
		j.results = append(j.results, r)
		if err := j.rd.Release(rec.Position); err != nil {
			j.t.Fatal(err)
		}
	}
	return j.results
}

func (j *fakeJVM) close() { j.w.Close(); j.rd.Close() }

// testRows makes n rows numbered from start: data embeds the number, every third row has
// no ordering key, keys cycle over 7 values, attributes vary (none for every fourth row).
func testRows(start, n, size int) []outMsg {
	rows := make([]outMsg, n)
	for i := range rows {
		k := start + i
		d := fmt.Appendf(nil, "row-%08d|", k)
		for len(d) < size {
			d = append(d, byte(k*31+len(d)))
		}
		r := outMsg{Data: d}
		if k%4 != 0 {
			r.Attrs = map[string]string{"row": strconv.Itoa(k), "ü": strings.Repeat("v", k%5)}
		}
		if k%3 != 0 {
			r.Key = "key-" + strconv.Itoa(k%7)
		}
		rows[i] = r
	}
	return rows
}

func newPublishEmulator(t testing.TB) *emulator.Server {
	t.Helper()
	srv, err := emulator.New(emulator.Config{Topics: []string{"out"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func publishConfig(root string, srv *emulator.Server) Config {
	return Config{Dir: root, ClientOptions: srv.ClientOptions(), Partitions: 1, Streams: 1,
		Publish: PublishConfig{Backoff: ackdBackoffFast, RetryTimeout: 5 * time.Second}}
}

// checkPublished compares the emulator's messages with want: the same multiset, byte
// for byte, and each ordering key's messages in the order written.
func checkPublished(t testing.TB, srv *emulator.Server, want []outMsg) {
	t.Helper()
	got := srv.Messages()
	if len(got) != len(want) {
		t.Fatalf("the emulator holds %d messages, want %d", len(got), len(want))
	}
	byData := map[string]outMsg{}
	for _, w := range want {
		byData[string(w.Data)] = w
	}
	lastByKey := map[string]int{}
	index := map[string]int{}
	for i, w := range want {
		index[string(w.Data)] = i
	}
	for _, m := range got {
		w, ok := byData[string(m.Data)]
		if !ok {
			t.Fatalf("unexpected or duplicate message %q", m.Data)
		}
		delete(byData, string(m.Data))
		if !maps.Equal(m.Attributes, w.Attrs) && !(len(m.Attributes) == 0 && len(w.Attrs) == 0) {
			t.Fatalf("message %q: attributes %v, want %v", m.Data, m.Attributes, w.Attrs)
		}
		if m.OrderingKey != w.Key {
			t.Fatalf("message %q: ordering key %q, want %q", m.Data, m.OrderingKey, w.Key)
		}
		if w.Key != "" {
			i := index[string(m.Data)]
			if last, seen := lastByKey[w.Key]; seen && last > i {
				t.Fatalf("ordering key %q: row %d published after row %d", w.Key, last, i)
			}
			lastByKey[w.Key] = i
		}
	}
}

// waitGone waits until the writer's files and directories are removed.
func waitGone(t testing.TB, root string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(root, TopicsDirName)); os.IsNotExist(err) {
			return
		}
		if time.Now().After(deadline) {
			ents, _ := os.ReadDir(filepath.Join(root, TopicsDirName))
			t.Fatalf("writer files still there after 10 s: %v", ents)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPublishRoundTrip(t *testing.T) {
	root := shmRoot(t)
	srv := newPublishEmulator(t)
	cfg := publishConfig(root, srv)
	cfg.Publish.MaxRequestBytes = 64 << 10 // several requests per batch
	d := startDaemon(t, cfg)
	j := attachTopic(t, d.sock, `{"op":"attach_topic","project":"`+project+`","topic":"out","label":"test writer 1"}`)
	if j.st.Label != "test writer 1" || j.st.Topic != "out" || j.st.MaxMessages != MaxPublishMessages {
		t.Fatalf("writer status %+v", j.st)
	}
	var all []outMsg
	batches := 0
	for start := 0; start < 12000; {
		n := 1 + (start*7)%2500 // 1..2500 rows: past the 1000-message request limit
		rows := testRows(start, n, 100+start%300)
		id := j.write(rows)
		batches++
		if id != int64(batches) {
			t.Fatalf("batch id %d, want %d", id, batches)
		}
		all = append(all, rows...)
		start += n
	}
	res := j.await(batches, 60*time.Second)
	seen := map[int64]bool{}
	var rows int64
	for _, r := range res {
		if r.Status != 0 || r.Err != "" || r.Published != r.Rows || r.Attempts != 1 || r.Bytes <= 0 {
			t.Fatalf("result %+v: want status 0, every row published in one attempt", r)
		}
		if seen[r.BatchID] {
			t.Fatalf("batch %d answered twice", r.BatchID)
		}
		seen[r.BatchID] = true
		rows += r.Rows
	}
	if rows != int64(len(all)) {
		t.Fatalf("results count %d rows, want %d", rows, len(all))
	}
	checkPublished(t, srv, all)
	// 1000 messages and 64 KiB per request at most: at least this many requests.
	if reqs := metric(t, d.metrics, "pullerd_publish_requests_total"); reqs < float64(len(all))/1000 || reqs < 12000*100/(64<<10) {
		t.Fatalf("%v Publish requests for %d messages", reqs, len(all))
	}
	st := ctlReq(t, d.sock, `{"op":"status"}`)
	if len(st.Writers) != 1 || st.Writers[0].Published != int64(len(all)) || st.Writers[0].Batches != int64(batches) {
		t.Fatalf("status writers %+v", st.Writers)
	}
	j.close()
	waitGone(t, root)
	if g := metric(t, d.metrics, "pullerd_publish_writers"); g != 0 {
		t.Fatalf("pullerd_publish_writers = %v after the writer closed", g)
	}
}

// ackdBackoffFast keeps retry tests short.
var ackdBackoffFast = ackd.Backoff{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond, Multiplier: 2}

func TestPublishRetriesTransientErrors(t *testing.T) {
	root := shmRoot(t)
	srv := newPublishEmulator(t)
	d := startDaemon(t, publishConfig(root, srv))
	j := attachTopic(t, d.sock, `{"op":"attach_topic","topic":"projects/`+project+`/topics/out","linger_ms":1,"max_request_bytes":20000}`)
	if j.st.LingerMs != 1 || j.st.MaxRequestBytes != 20000 {
		t.Fatalf("per-writer overrides not applied: %+v", j.st)
	}
	if err := srv.InjectUnaryError("Publish", codes.Unavailable, "publish backend down", 4); err != nil {
		t.Fatal(err)
	}
	all := testRows(0, 3000, 200)
	j.write(all[:1500])
	res := j.await(1, 30*time.Second)
	if err := srv.InjectUnaryError("Publish", codes.ResourceExhausted, "quota", 3); err != nil {
		t.Fatal(err)
	}
	j.write(all[1500:])
	res = j.await(2, 30*time.Second)
	retried := false
	for _, r := range res {
		if r.Status != 0 || r.Published != r.Rows {
			t.Fatalf("result %+v: transient errors must be retried until published", r)
		}
		retried = retried || r.Attempts > 1
	}
	if !retried {
		t.Fatal("no result reports a retry; the injected errors were not hit")
	}
	checkPublished(t, srv, all) // nothing lost, nothing twice
	for _, code := range []string{"Unavailable", "ResourceExhausted"} {
		if n := metricLabel(t, d.metrics, "pullerd_publish_retries_total", `code="`+code+`"`); n < 1 {
			t.Fatalf("no retry counted for %s", code)
		}
	}
	if srv.Stats().UnaryErrorsInjected != 7 {
		t.Fatalf("%d injected errors hit, want 7", srv.Stats().UnaryErrorsInjected)
	}
	j.close()
	waitGone(t, root)
}

func TestPublishPermanentError(t *testing.T) {
	root := shmRoot(t)
	srv := newPublishEmulator(t)
	d := startDaemon(t, publishConfig(root, srv))

	// A topic that does not exist: NOT_FOUND names it.
	j := attachTopic(t, d.sock, `{"op":"attach_topic","project":"`+project+`","topic":"missing"}`)
	j.write(testRows(0, 10, 50))
	res := j.await(1, 20*time.Second)
	if codes.Code(res[0].Status) != codes.NotFound || !strings.Contains(res[0].Err, "projects/"+project+"/topics/missing") || res[0].Published != 0 {
		t.Fatalf("result %+v: want NOT_FOUND naming the topic", res[0])
	}
	// Nothing more is published by this writer.
	j.write(testRows(10, 10, 50))
	res = j.await(2, 20*time.Second)
	if codes.Code(res[1].Status) != codes.NotFound || !strings.Contains(res[1].Err, "not published: an earlier Publish of this writer failed") {
		t.Fatalf("second result %+v", res[1])
	}
	j.close()

	// PERMISSION_DENIED injected for every call: not retried.
	if err := srv.InjectUnaryError("Publish", codes.PermissionDenied, "caller lacks pubsub.topics.publish", emulator.Forever); err != nil {
		t.Fatal(err)
	}
	j2 := attachTopic(t, d.sock, `{"op":"attach_topic","project":"`+project+`","topic":"out"}`)
	j2.write(testRows(0, 5, 50))
	res = j2.await(1, 20*time.Second)
	if codes.Code(res[0].Status) != codes.PermissionDenied || res[0].Attempts != 1 || !strings.Contains(res[0].Err, "caller lacks pubsub.topics.publish") {
		t.Fatalf("result %+v: want PERMISSION_DENIED after one attempt", res[0])
	}
	srv.ClearUnaryErrors()

	// Retries that never succeed stop at the retry timeout.
	if err := srv.InjectUnaryError("Publish", codes.Unavailable, "down for good", emulator.Forever); err != nil {
		t.Fatal(err)
	}
	j2.close()
	j3 := attachTopic(t, d.sock, `{"op":"attach_topic","project":"`+project+`","topic":"out"}`)
	start := time.Now()
	j3.write(testRows(0, 5, 50))
	res = j3.await(1, 30*time.Second)
	if codes.Code(res[0].Status) != codes.Unavailable || res[0].Attempts < 2 || !strings.Contains(res[0].Err, "-publish-retry-timeout") {
		t.Fatalf("result %+v: want UNAVAILABLE after retries", res[0])
	}
	if el := time.Since(start); el > 15*time.Second {
		t.Fatalf("gave up after %v; the retry timeout is 5 s", el)
	}
	srv.ClearUnaryErrors()
	j3.close()
	waitGone(t, root)
	if len(srv.Messages()) != 0 {
		t.Fatalf("%d messages published by failing writers", len(srv.Messages()))
	}
}

func TestPublishBadBatch(t *testing.T) {
	root := shmRoot(t)
	srv := newPublishEmulator(t)
	d := startDaemon(t, publishConfig(root, srv))
	j := attachTopic(t, d.sock, `{"op":"attach_topic","project":"`+project+`","topic":"out"}`)
	meta, body := encodeOutbound(t, testRows(0, 4, 10))
	j.writeRaw(meta, body, 5) // row_count disagrees with the RecordBatch
	res := j.await(1, 10*time.Second)
	if codes.Code(res[0].Status) != codes.InvalidArgument || !strings.Contains(res[0].Err, "row_count 5") {
		t.Fatalf("result %+v: want INVALID_ARGUMENT naming row_count", res[0])
	}
	j.close()

	j2 := attachTopic(t, d.sock, `{"op":"attach_topic","project":"`+project+`","topic":"out"}`)
	j2.write([]outMsg{{Data: []byte("x")}, {}}) // no data, no attributes
	res = j2.await(1, 10*time.Second)
	if codes.Code(res[0].Status) != codes.InvalidArgument || !strings.Contains(res[0].Err, "row 1 has empty data and no attributes") {
		t.Fatalf("result %+v", res[0])
	}
	j2.close()
	waitGone(t, root)
	if len(srv.Messages()) != 0 {
		t.Fatal("a bad batch was published")
	}
}

func TestPublishWriterAbortAndShutdown(t *testing.T) {
	root := shmRoot(t)
	srv := newPublishEmulator(t)
	cfg := publishConfig(root, srv)
	cfg.ShutdownTimeout = 2 * time.Second
	d := startDaemon(t, cfg)

	// Abort: the JVM closes with batches unanswered (every Publish hangs on an injected
	// error loop); pullerd drops them and removes the rings at once.
	if err := srv.InjectUnaryError("Publish", codes.Unavailable, "slow", emulator.Forever); err != nil {
		t.Fatal(err)
	}
	j := attachTopic(t, d.sock, `{"op":"attach_topic","project":"`+project+`","topic":"out"}`)
	j.write(testRows(0, 100, 50))
	time.Sleep(200 * time.Millisecond)
	j.close()
	waitGone(t, root)

	// Shutdown: a writer waiting on retries is answered UNAVAILABLE and sees pullerd close.
	j2 := attachTopic(t, d.sock, `{"op":"attach_topic","project":"`+project+`","topic":"out"}`)
	j2.write(testRows(0, 100, 50))
	time.Sleep(200 * time.Millisecond)
	d.stop(t)
	res := j2.await(1, 10*time.Second)
	if res[0].Status == 0 || res[0].Published != 0 {
		t.Fatalf("result %+v: want a failure at shutdown", res[0])
	}
	if !j2.res.Peer(ringbuf.Producer).Closed {
		t.Fatal("pullerd did not mark the RESULTS ring closed at shutdown")
	}
	assertEmpty(t, root)
	srv.ClearUnaryErrors()
}

func TestAttachTopicRequests(t *testing.T) {
	root := shmRoot(t)
	srv := newPublishEmulator(t)
	d := startDaemon(t, publishConfig(root, srv))
	for _, c := range []struct{ req, want string }{
		{`{"op":"attach_topic"}`, "needs a topic"},
		{`{"op":"attach_topic","topic":"out"}`, "no project"},
		{`{"op":"attach_topic","project":"p","topic":"goog-x"}`, "topic id"},
		{`{"op":"attach_topic","project":"p","topic":"projects/p/subscriptions/x"}`, "want projects/<project>/topics/<id>"},
		{`{"op":"attach_topic","project":"p","topic":"out","subscription":"s"}`, "not subscription"},
		{`{"op":"attach_topic","project":"p","topic":"out","ring_capacity":100000}`, "ring_capacity=100000"},
		{`{"op":"attach_topic","project":"p","topic":"out","max_request_bytes":20000000}`, "max_request_bytes"},
		{`{"op":"attach_topic","project":"p","topic":"out","linger_ms":-1}`, "linger_ms"},
		{`{"op":"attach_topic","project":"p","topic":"out","label":"` + strings.Repeat("x", 300) + `"}`, "label"},
		{`{"op":"status","topic":"out"}`, "only for attach_topic"},
		{`{"op":"nope"}`, `"attach_topic"`},
	} {
		resp := ctlReq(t, d.sock, c.req)
		if resp.OK || !strings.Contains(resp.Error, c.want) {
			t.Errorf("%s: answer %+v, want an error containing %q", c.req, resp, c.want)
		}
	}
	// A writer nobody attaches to goes away after the attach timeout (shortened here).
	d.stop(t)
	cfg := publishConfig(root, srv)
	cfg.Publish.AttachTimeout = 300 * time.Millisecond
	d = startDaemon(t, cfg)
	resp := ctlReq(t, d.sock, `{"op":"attach_topic","project":"p","topic":"out"}`)
	if !resp.OK {
		t.Fatal(resp.Error)
	}
	if b, _ := json.Marshal(resp.Writer); !strings.Contains(string(b), `"outbound_ring"`) {
		t.Fatalf("writer answer %s", b)
	}
	waitGone(t, root)
}

func TestPublishStaleWriterFilesRemoved(t *testing.T) {
	root := shmRoot(t)
	srv := newPublishEmulator(t)
	dir := filepath.Join(root, TopicsDirName, project+".out")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{OutboundRingName(3), ResultsRingName(3), ".outbound-4.ring.tmp-999999"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("stale"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	d := startDaemon(t, publishConfig(root, srv))
	if _, err := os.Stat(filepath.Join(root, TopicsDirName)); !os.IsNotExist(err) {
		t.Fatalf("stale writer files not removed at start: %v", err)
	}
	d.stop(t)
	assertEmpty(t, root)
}

// metricLabel sums the samples of name whose labels contain label.
func metricLabel(t testing.TB, addr, name, label string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `\{([^}]*)\} ([0-9.e+-]+)$`)
	var sum float64
	for _, m := range re.FindAllStringSubmatch(string(body), -1) {
		if strings.Contains(m[1], label) {
			v, _ := strconv.ParseFloat(m[2], 64)
			sum += v
		}
	}
	return sum
}

// TestResultLayout checks every RESULTS body offset against docs/FORMAT.md section 6.2
// (the Java twin is PublishResults, checked by ResultLayoutTest).
func TestResultLayout(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"outbound_batch_id", ResBatchIDOffset, 0}, {"outbound_instance_id", ResInstanceIDOffset, 8},
		{"rows", ResRowsOffset, 16}, {"published", ResPublishedOffset, 20}, {"status", ResStatusOffset, 24},
		{"attempts", ResAttemptsOffset, 28}, {"published_bytes", ResBytesOffset, 32}, {"latency_ns", ResLatencyOffset, 40},
		{"error_length", ResErrorLengthOffset, 48}, {"reserved", ResReservedOffset, 52}, {"error text", ResultLength, 64},
	} {
		if c.got != c.want {
			t.Errorf("%s at %d, FORMAT.md says %d", c.name, c.got, c.want)
		}
	}
}

// TestPublishWriterDeath: a JVM that dies (its pid gone) with a batch in flight is noticed
// at the next housekeeping; pullerd cancels the request and removes the rings.
func TestPublishWriterDeath(t *testing.T) {
	root := shmRoot(t)
	srv := newPublishEmulator(t)
	d := startDaemon(t, publishConfig(root, srv))
	if err := srv.InjectUnaryError("Publish", codes.Unavailable, "slow", emulator.Forever); err != nil {
		t.Fatal(err)
	}
	defer srv.ClearUnaryErrors()
	j := attachTopic(t, d.sock, `{"op":"attach_topic","project":"`+project+`","topic":"out"}`)
	j.write(testRows(0, 10, 50))
	time.Sleep(200 * time.Millisecond)
	// A pid that existed and is gone: the producer identity of a dead JVM.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(j.out.Path(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(dead.Process.Pid))
	if _, err := f.WriteAt(b[:], ringbuf.ProducerPidOffset); err != nil {
		t.Fatal(err)
	}
	f.Close()
	waitGone(t, root)
	if n := metricLabel(t, d.metrics, "pullerd_publish_batches_total", `status="Canceled"`); n != 1 {
		t.Fatalf("%v batches answered CANCELLED, want the one in flight", n)
	}
	if len(srv.Messages()) != 0 {
		t.Fatal("a dead writer's batch was published")
	}
}
