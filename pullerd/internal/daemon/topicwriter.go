package daemon

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	gax "github.com/googleapis/gax-go/v2"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/pubsub-shm/pubsub-shm/ackd"
	"github.com/pubsub-shm/pubsub-shm/pullerd/internal/outbatch"
	"github.com/pubsub-shm/pubsub-shm/ringbuf"
)

// RESULTS record body (docs/FORMAT.md section 6): a RAW record of a RESULTS ring (a ring of
// kind DATA that pullerd produces) whose body starts with this 64-byte block, followed by
// error_length bytes of UTF-8 error text. The record's own batch_id numbers the results
// (1, 2, 3, ...); its row_count is the OUTBOUND batch's row count.
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+---------------------------------------------------------------+
//	|                  outbound_batch_id (i64)                      |  0
//	+---------------------------------------------------------------+
//	|                 outbound_instance_id (u64)                    |  8
//	+---------------------------------------------------------------+
//	|                        rows (i32)                             | 16
//	|                      published (i32)                          | 20
//	|                        status (i32)                           | 24
//	|                       attempts (i32)                          | 28
//	+---------------------------------------------------------------+
//	|                   published_bytes (i64)                       | 32
//	+---------------------------------------------------------------+
//	|                      latency_ns (i64)                         | 40
//	+---------------------------------------------------------------+
//	|                    error_length (u32)                         | 48
//	|                      reserved (u32)                           | 52
//	|                      reserved (u64)                           | 56
//	+---------------------------------------------------------------+
//	|                 error text (error_length bytes)               | 64
//	+---------------------------------------------------------------+
const (
	ResBatchIDOffset     = 0
	ResInstanceIDOffset  = ResBatchIDOffset + 8
	ResRowsOffset        = ResInstanceIDOffset + 8
	ResPublishedOffset   = ResRowsOffset + 4
	ResStatusOffset      = ResPublishedOffset + 4
	ResAttemptsOffset    = ResStatusOffset + 4
	ResBytesOffset       = ResAttemptsOffset + 4
	ResLatencyOffset     = ResBytesOffset + 8
	ResErrorLengthOffset = ResLatencyOffset + 8
	ResReservedOffset    = ResErrorLengthOffset + 4
	// ResultLength is the fixed part of a result body; the error text follows.
	ResultLength = ResReservedOffset + 4 + 8
	// MaxResultError bounds the error text of one result.
	MaxResultError = 2048
)

// writerConfig is one writer's flush policy.
type writerConfig struct {
	linger      time.Duration
	maxBytes    int64
	maxMsgs     int
	maxInflight int
}

// publishClient is the part of apiv1.TopicAdminClient a writer uses.
type publishClient interface {
	Publish(ctx context.Context, req *pb.PublishRequest, opts ...gax.CallOption) (*pb.PublishResponse, error)
}

// noPublishRetry turns off the generated client's retries: the writer retries itself,
// with its own back-off, deadline and metrics.
var noPublishRetry = gax.WithRetry(func() gax.Retryer { return nil })

// topicWriter publishes one OUTBOUND ring and answers in its RESULTS ring. One goroutine
// (run) owns every field below the line; each Publish request in flight has a goroutine
// of its own that hands the request back through completions.
type topicWriter struct {
	p       *publishing
	client  publishClient
	id      int64
	topic   Topic
	name    string // full topic name
	label   string
	dir     string
	wc      writerConfig
	log     *zap.Logger
	out     *ringbuf.Ring
	res     *ringbuf.Ring
	rd      *ringbuf.Reader
	rw      *ringbuf.Writer
	created time.Time

	stopCh      chan struct{}
	stopOnce    sync.Once
	rpcCtx      context.Context // ends requests in flight (writer gone, or shutdown timeout)
	rpcCancel   context.CancelFunc
	completions chan *pubReq

	nBatches, nRows, nPublished, nFailed, nInflight atomic.Int64
	producerAlive                                   atomic.Bool

	// ---- owned by run ----
	lanes    []*lane
	rr       int
	inflight int
	failure  error // the first permanent failure: nothing more is published
	closing  string
	answer   bool // write results (false once the JVM is gone)
	results  []result
	free     []*pubReq
	lastHK   time.Time
}

// obBatch is one OUTBOUND record being published.
type obBatch struct {
	pos, id   int64
	rows      int
	view      *outbatch.View
	pending   int // rows not yet settled
	published int
	bytes     int64
	code      codes.Code
	errText   string
	attempts  int
	readAt    time.Time
}

// lane is a sequence of requests. Lane 0 carries the messages without an ordering key and
// may have several requests in flight; every other lane carries the keys that hash to it
// and has at most one request in flight, so a key's messages reach Pub/Sub in ring order.
type lane struct {
	keyed bool
	busy  bool
	open  *pubReq
	ready []*pubReq
}

// pubReq is one Publish request. Its messages point into the ring records they come from.
type pubReq struct {
	lane   *lane
	req    pb.PublishRequest
	pool   []*pb.PubsubMessage // reused message structs
	maps   []map[string]string // reused attribute maps, by message slot
	parts  []reqPart
	bytes  int64
	first  time.Time
	err    error
	tries  int
	prefix string // for requests failed before they were sent
}

type reqPart struct {
	b     *obBatch
	n     int
	bytes int64
}

// result is one answer waiting for space in the RESULTS ring.
type result struct {
	batchID   int64
	rows      int32
	published int32
	code      codes.Code
	attempts  int32
	bytes     int64
	latency   time.Duration
	err       string
}

func newTopicWriter(p *publishing, client publishClient, id int64, req AttachTopicRequest, capacity int64, wc writerConfig) (w *topicWriter, err error) {
	dir, err := p.topicDir(req.Topic)
	if err != nil {
		return nil, err
	}
	w = &topicWriter{p: p, client: client, id: id, topic: req.Topic, name: req.Topic.FullName(), label: req.Label, dir: dir, wc: wc,
		created: time.Now(), stopCh: make(chan struct{}), completions: make(chan *pubReq, wc.maxInflight), answer: true}
	w.log = p.log.With(zap.String("topic", w.name), zap.Int64("writer", id), zap.String("label", req.Label))
	schema, err := outbatch.SchemaMessage()
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			w.closeRings()
			w.removeFiles()
		}
	}()
	w.out, err = createRing(filepath.Join(dir, OutboundRingName(id)), ringbuf.CreateOptions{Kind: ringbuf.KindOutbound,
		Capacity: capacity, Partition: int32(id), Schema: schema})
	if err != nil {
		return nil, err
	}
	w.res, err = createRing(filepath.Join(dir, ResultsRingName(id)), ringbuf.CreateOptions{Kind: ringbuf.KindData,
		Capacity: p.cfg.ResultsRingCapacity, Partition: int32(id)})
	if err != nil {
		return nil, err
	}
	if w.rd, err = ringbuf.NewReader(w.out); err != nil {
		return nil, err
	}
	w.rd.DeadProducerTimeout = p.d.cfg.ReaderTimeout
	if w.rw, err = ringbuf.NewWriter(w.res); err != nil {
		return nil, err
	}
	w.rpcCtx, w.rpcCancel = context.WithCancel(context.Background())
	w.lanes = []*lane{{}}
	for range wc.maxInflight {
		w.lanes = append(w.lanes, &lane{keyed: true})
	}
	p.m.writers.WithLabelValues(w.name).Inc()
	w.log.Info("writer attached", zap.String("outbound", w.out.Path()), zap.Int64("capacity", capacity),
		zap.Duration("linger", wc.linger), zap.Int64("max_request_bytes", wc.maxBytes))
	return w, nil
}

// stop asks the writer to stop (pullerd shutdown): requests in flight get timeout to end.
func (w *topicWriter) stop(timeout time.Duration) {
	w.stopOnce.Do(func() {
		close(w.stopCh)
		time.AfterFunc(timeout, w.rpcCancel)
	})
}

// run is the writer's loop: read batches, cut them into requests, send, settle, answer.
func (w *topicWriter) run() {
	defer w.finish()
	const minPark, maxPark = 20 * time.Microsecond, time.Millisecond
	park := minPark
	stopCh := w.stopCh
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		work := 0
	drain:
		for {
			select {
			case r := <-w.completions:
				w.completed(r)
				work++
			default:
				break drain
			}
		}
		if w.closing == "" {
			work += w.read(64)
		}
		now := time.Now()
		w.closeDue(now)
		work += w.dispatch()
		w.flushResults()
		if now.Sub(w.lastHK) >= 100*time.Millisecond {
			w.housekeeping(now)
		}
		if w.closing != "" && w.inflight == 0 {
			return
		}
		if work > 0 {
			park = minPark
			continue
		}
		// The ring has no wake-up: poll it with a growing park (20 us to 1 ms).
		wait := park
		park = min(2*park, maxPark)
		if dl := w.nextDeadline(); !dl.IsZero() {
			wait = max(0, min(wait, time.Until(dl)))
		}
		timer.Reset(wait)
		select {
		case r := <-w.completions:
			w.completed(r)
		case <-timer.C:
		case <-stopCh:
			stopCh = nil
			if w.closing == "" {
				w.beginClose("pullerd is shutting down", codes.Unavailable, false)
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// housekeeping stamps heartbeats and watches the JVM on the other side.
func (w *topicWriter) housekeeping(now time.Time) {
	w.lastHK = now
	w.out.Heartbeat(ringbuf.Consumer)
	w.res.Heartbeat(ringbuf.Producer)
	if w.closing != "" {
		return
	}
	id := w.out.Peer(ringbuf.Producer)
	switch {
	case id.Pid == 0:
		if now.Sub(w.created) > w.p.cfg.AttachTimeout {
			w.beginClose(fmt.Sprintf("no JVM attached as producer within %v", w.p.cfg.AttachTimeout), codes.Canceled, true)
		}
	case id.Closed:
		w.producerAlive.Store(false)
		// A clean close after commit leaves nothing unpublished; after an abort the rest is
		// dropped.
		w.beginClose("closed by the JVM", codes.Canceled, true)
	default:
		alive, why := w.out.PeerAlive(ringbuf.Producer, w.p.d.cfg.ReaderTimeout)
		w.producerAlive.Store(alive)
		if !alive {
			w.beginClose("the JVM is gone: "+why, codes.Canceled, true)
		}
	}
}

// beginClose stops reading and fails every request not yet sent. gone: the JVM no longer
// reads answers, so requests in flight are cancelled and no more results are written.
func (w *topicWriter) beginClose(why string, code codes.Code, gone bool) {
	w.closing = why
	if gone {
		w.answer = false
		w.results = nil
		w.rpcCancel()
	}
	w.failUnsent(status.Error(code, "not published: writer stopping: "+why), "")
	w.log.Info("writer stopping", zap.String("why", why), zap.Int("requests_in_flight", w.inflight))
}

// read polls up to max records from the OUTBOUND ring.
func (w *topicWriter) read(max int) int {
	n := 0
	for ; n < max; n++ {
		rec, ok, err := w.rd.Poll()
		if err != nil {
			w.log.Error("corrupt OUTBOUND ring; the writer fails", zap.Error(err))
			w.queueResult(result{batchID: 0, code: codes.Internal, err: "pullerd: corrupt OUTBOUND ring: " + err.Error()})
			w.beginClose("corrupt OUTBOUND ring", codes.Internal, false)
			return n
		}
		if !ok {
			return n
		}
		w.take(rec)
	}
	return n
}

// take cuts one record into requests (or answers it at once when it cannot be published).
func (w *topicWriter) take(rec ringbuf.Record) {
	now := time.Now()
	b := &obBatch{pos: rec.Position, id: rec.BatchID, rows: int(rec.RowCount), readAt: now}
	w.nBatches.Add(1)
	w.nRows.Add(int64(b.rows))
	if w.failure != nil {
		b.code, b.errText = failureOf(w.failure, "not published: an earlier Publish of this writer failed: ")
		w.batchDone(b)
		return
	}
	var err error
	if rec.Type != ringbuf.TypeArrow {
		err = fmt.Errorf("%w: record type %d: OUTBOUND rings carry ARROW records only", outbatch.ErrBadBatch, rec.Type)
	} else if b.view, err = outbatch.Parse(rec.Meta, rec.Body, rec.RowCount); err == nil {
		err = b.view.Check()
	}
	if err != nil {
		b.code, b.errText = codes.InvalidArgument, fmt.Sprintf("pullerd: OUTBOUND batch %d: %v", b.id, err)
		w.fail(status.Error(codes.InvalidArgument, b.errText))
		w.batchDone(b)
		return
	}
	b.pending = b.rows
	if b.rows == 0 {
		w.batchDone(b)
		return
	}
	v := b.view
	nk := uint32(len(w.lanes) - 1)
	for i := range b.rows {
		ok := v.OrderingKey(i)
		ln := w.lanes[0]
		if ok != nil {
			h := fnv.New32a()
			h.Write(ok)
			ln = w.lanes[1+h.Sum32()%nk]
		}
		size := w.msgSize(v, i, ok)
		if r := ln.open; r != nil && (len(r.req.Messages) >= w.wc.maxMsgs || r.bytes+size > w.wc.maxBytes) {
			w.closeOpen(ln)
		}
		if ln.open == nil {
			ln.open = w.newReq(ln, now)
		}
		ln.open.add(b, v, i, ok, size)
	}
}

// msgSize returns the encoded size of row i as one element of PublishRequest.messages
// (an upper bound: map entries always count their key and value fields).
func (w *topicWriter) msgSize(v *outbatch.View, i int, ok []byte) int64 {
	field := func(n int) int { return 1 + protowire.SizeVarint(uint64(n)) + n }
	n := 0
	if d := len(v.Data(i)); d > 0 {
		n += field(d)
	}
	lo, hi := v.Attrs(i)
	for e := lo; e < hi; e++ {
		n += field(field(len(v.Key(e))) + field(len(v.Value(e))))
	}
	if len(ok) > 0 {
		n += field(len(ok))
	}
	return int64(field(n))
}

func (w *topicWriter) newReq(ln *lane, now time.Time) *pubReq {
	var r *pubReq
	if k := len(w.free); k > 0 {
		r = w.free[k-1]
		w.free = w.free[:k-1]
	} else {
		r = &pubReq{}
	}
	r.lane, r.first = ln, now
	r.req.Topic = w.name
	r.bytes = int64(1 + protowire.SizeVarint(uint64(len(w.name))) + len(w.name))
	return r
}

// add appends row i of b, pointing at the ring's bytes.
func (r *pubReq) add(b *obBatch, v *outbatch.View, i int, ok []byte, size int64) {
	k := len(r.req.Messages)
	if k == len(r.pool) {
		r.pool = append(r.pool, &pb.PubsubMessage{})
		r.maps = append(r.maps, nil)
	}
	m := r.pool[k]
	m.Data = v.Data(i)
	m.OrderingKey = outbatch.RingString(ok)
	m.Attributes = nil
	if lo, hi := v.Attrs(i); lo < hi {
		mp := r.maps[k]
		if mp == nil {
			mp = make(map[string]string, hi-lo)
			r.maps[k] = mp
		}
		for e := lo; e < hi; e++ {
			mp[outbatch.RingString(v.Key(e))] = outbatch.RingString(v.Value(e))
		}
		m.Attributes = mp
	}
	r.req.Messages = append(r.req.Messages, m)
	r.bytes += size
	if n := len(r.parts); n > 0 && r.parts[n-1].b == b {
		r.parts[n-1].n++
		r.parts[n-1].bytes += size
	} else {
		r.parts = append(r.parts, reqPart{b: b, n: 1, bytes: size})
	}
}

// recycle returns a settled request to the free list, dropping its references.
func (w *topicWriter) recycle(r *pubReq) {
	for k, m := range r.req.Messages {
		m.Data, m.OrderingKey, m.Attributes = nil, "", nil
		if mp := r.maps[k]; mp != nil {
			clear(mp)
		}
	}
	clear(r.req.Messages)
	r.req.Messages = r.req.Messages[:0]
	clear(r.parts)
	r.parts = r.parts[:0]
	r.lane, r.err, r.tries, r.prefix, r.bytes = nil, nil, 0, "", 0
	w.free = append(w.free, r)
}

func (w *topicWriter) closeOpen(ln *lane) {
	ln.ready = append(ln.ready, ln.open)
	ln.open = nil
}

// closeDue closes the open requests that lingered long enough.
func (w *topicWriter) closeDue(now time.Time) {
	for _, ln := range w.lanes {
		if ln.open != nil && now.Sub(ln.open.first) >= w.wc.linger {
			w.closeOpen(ln)
		}
	}
}

// nextDeadline returns when the first open request is due (zero if none).
func (w *topicWriter) nextDeadline() time.Time {
	var dl time.Time
	for _, ln := range w.lanes {
		if ln.open != nil {
			if d := ln.open.first.Add(w.wc.linger); dl.IsZero() || d.Before(dl) {
				dl = d
			}
		}
	}
	return dl
}

// dispatch sends ready requests, round robin over the lanes, within the in-flight bound.
func (w *topicWriter) dispatch() int {
	sent := 0
	for progress := true; progress && w.inflight < w.wc.maxInflight; {
		progress = false
		for k := range w.lanes {
			ln := w.lanes[(w.rr+k)%len(w.lanes)]
			if len(ln.ready) == 0 || (ln.keyed && ln.busy) || w.inflight >= w.wc.maxInflight {
				continue
			}
			r := ln.ready[0]
			copy(ln.ready, ln.ready[1:])
			ln.ready[len(ln.ready)-1] = nil
			ln.ready = ln.ready[:len(ln.ready)-1]
			w.send(r)
			sent++
			progress = true
		}
		w.rr++
	}
	return sent
}

func (w *topicWriter) send(r *pubReq) {
	w.inflight++
	w.nInflight.Add(1)
	w.p.m.inflight.WithLabelValues(w.name).Inc()
	r.lane.busy = true
	go func() {
		r.err = w.publish(r)
		w.completions <- r
	}()
}

// publish sends one request, retrying transient failures with back-off and jitter until
// the retry timeout. It runs on the request's own goroutine.
func (w *topicWriter) publish(r *pubReq) error {
	cfg := &w.p.cfg
	weight := min(r.bytes, cfg.MaxOutstandingBytes)
	if err := w.p.flow.Acquire(w.rpcCtx, weight); err != nil {
		return status.Error(codes.Canceled, "not published: writer stopped while the request waited for flow control")
	}
	defer w.p.flow.Release(weight)
	start := time.Now()
	for attempt := 0; ; attempt++ {
		r.tries = attempt + 1
		ctx, cancel := context.WithTimeout(w.rpcCtx, cfg.AttemptTimeout)
		resp, err := w.client.Publish(ctx, &r.req, noPublishRetry)
		cancel()
		code := status.Code(err)
		w.p.m.requests.WithLabelValues(w.name, code.String()).Inc()
		if err == nil {
			if n := len(resp.GetMessageIds()); n != len(r.req.Messages) {
				return status.Errorf(codes.Internal, "Publish to %s returned %d message ids for %d messages", w.name, n, len(r.req.Messages))
			}
			return nil
		}
		if w.rpcCtx.Err() != nil {
			return status.Errorf(codes.Canceled, "Publish to %s cancelled (writer stopped) after %d attempts; last error: %v", w.name, attempt+1, err)
		}
		if !ackd.Transient(code) {
			return status.Errorf(code, "Publish to %s failed: %s", w.name, status.Convert(err).Message())
		}
		d := cfg.Backoff.Delay(attempt)
		if time.Since(start)+d > cfg.RetryTimeout {
			return status.Errorf(code, "Publish to %s failed after %d attempts in %v (-publish-retry-timeout %v): %s",
				w.name, attempt+1, time.Since(start).Round(time.Millisecond), cfg.RetryTimeout, status.Convert(err).Message())
		}
		w.p.m.retries.WithLabelValues(w.name, code.String()).Inc()
		w.log.Debug("Publish failed; retrying", zap.Stringer("code", code), zap.Int("attempt", attempt+1), zap.Duration("backoff", d), zap.Error(err))
		t := time.NewTimer(d)
		select {
		case <-w.rpcCtx.Done():
			t.Stop()
			return status.Errorf(codes.Canceled, "Publish to %s cancelled (writer stopped) after %d attempts; last error: %v", w.name, attempt+1, err)
		case <-t.C:
		}
	}
}

// completed settles a request that came back from its goroutine.
func (w *topicWriter) completed(r *pubReq) {
	w.inflight--
	w.nInflight.Add(-1)
	w.p.m.inflight.WithLabelValues(w.name).Dec()
	r.lane.busy = false
	if r.err != nil {
		w.fail(r.err)
	} else {
		w.p.m.published.WithLabelValues(w.name).Add(float64(len(r.req.Messages)))
		w.p.m.bytes.WithLabelValues(w.name).Add(float64(r.bytes))
	}
	w.settle(r)
}

// fail records the first permanent failure: from then on nothing more is published (the
// task fails; publishing more would only add duplicates when Spark retries it), and the
// requests not yet sent are answered with the failure.
func (w *topicWriter) fail(err error) {
	if w.failure != nil {
		return
	}
	w.failure = err
	if w.closing == "" {
		w.log.Warn("publish failed; the writer publishes nothing more", zap.Error(err))
	}
	w.failUnsent(err, "not published: an earlier Publish of this writer failed: ")
}

// failUnsent settles every request not yet sent with err (its message prefixed).
func (w *topicWriter) failUnsent(err error, prefix string) {
	for _, ln := range w.lanes {
		if ln.open != nil {
			w.closeOpen(ln)
		}
		for _, r := range ln.ready {
			r.err, r.prefix = err, prefix
			w.settle(r)
		}
		clear(ln.ready)
		ln.ready = ln.ready[:0]
	}
}

// settle accounts a finished (or unsent) request's rows to their batches and recycles it.
func (w *topicWriter) settle(r *pubReq) {
	code, msg := codes.OK, ""
	if r.err != nil {
		code, msg = failureOf(r.err, r.prefix)
	}
	for _, part := range r.parts {
		b := part.b
		b.pending -= part.n
		b.attempts = max(b.attempts, r.tries)
		if code == codes.OK {
			b.published += part.n
			b.bytes += part.bytes
		} else if b.code == codes.OK {
			b.code, b.errText = code, msg
		}
		if b.pending == 0 {
			w.batchDone(b)
		}
	}
	w.recycle(r)
}

// failureOf returns err's gRPC code and message (prefixed).
func failureOf(err error, prefix string) (codes.Code, string) {
	st := status.Convert(err)
	code := st.Code()
	if code == codes.OK {
		code = codes.Unknown
	}
	return code, prefix + st.Message()
}

// batchDone releases a settled batch's record and queues its answer.
func (w *topicWriter) batchDone(b *obBatch) {
	if err := w.rd.Release(b.pos); err != nil {
		w.log.Error("bug: releasing an OUTBOUND record", zap.Error(err))
	}
	b.view = nil
	w.nPublished.Add(int64(b.published))
	if failed := b.rows - b.published; failed > 0 {
		w.nFailed.Add(int64(failed))
		w.p.m.failed.WithLabelValues(w.name).Add(float64(failed))
	}
	w.p.m.batches.WithLabelValues(w.name, b.code.String()).Inc()
	w.p.m.latency.WithLabelValues(w.name).Observe(time.Since(b.readAt).Seconds())
	w.queueResult(result{batchID: b.id, rows: int32(b.rows), published: int32(b.published), code: b.code,
		attempts: int32(b.attempts), bytes: b.bytes, latency: time.Since(b.readAt), err: b.errText})
}

func (w *topicWriter) queueResult(r result) {
	if w.answer {
		w.results = append(w.results, r)
	}
}

// flushResults writes queued answers while the RESULTS ring has space.
func (w *topicWriter) flushResults() {
	for len(w.results) > 0 {
		r := &w.results[0]
		msg := r.err
		if len(msg) > MaxResultError {
			msg = msg[:MaxResultError]
			for !utf8.ValidString(msg) {
				msg = msg[:len(msg)-1]
			}
		}
		c, err := w.rw.TryClaim(ringbuf.TypeRaw, 0, ResultLength+len(msg))
		if errors.Is(err, ringbuf.ErrFull) {
			return
		}
		if err != nil {
			w.log.Error("cannot write to the RESULTS ring; answers dropped", zap.Error(err))
			w.results = nil
			return
		}
		body := c.Body()
		le := binary.LittleEndian
		le.PutUint64(body[ResBatchIDOffset:], uint64(r.batchID))
		le.PutUint64(body[ResInstanceIDOffset:], w.out.InstanceID())
		le.PutUint32(body[ResRowsOffset:], uint32(r.rows))
		le.PutUint32(body[ResPublishedOffset:], uint32(r.published))
		le.PutUint32(body[ResStatusOffset:], uint32(r.code))
		le.PutUint32(body[ResAttemptsOffset:], uint32(r.attempts))
		le.PutUint64(body[ResBytesOffset:], uint64(r.bytes))
		le.PutUint64(body[ResLatencyOffset:], uint64(r.latency))
		le.PutUint32(body[ResErrorLengthOffset:], uint32(len(msg)))
		clear(body[ResReservedOffset:ResultLength])
		copy(body[ResultLength:], msg)
		if _, err := c.Commit(r.rows); err != nil {
			w.log.Error("bug: committing a result", zap.Error(err))
		}
		w.results[0] = result{}
		w.results = w.results[1:]
	}
}

// finish ends the writer: the last answers, producer_closed on the RESULTS ring (the JVM
// sees pullerd's end), then the files go.
func (w *topicWriter) finish() {
	w.rpcCancel()
	if w.answer {
		deadline := time.Now().Add(time.Second)
		for len(w.results) > 0 && time.Now().Before(deadline) {
			w.flushResults()
			if len(w.results) > 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}
	_ = w.rw.Close()
	_ = w.rd.Close()
	w.removeFiles()
	w.closeRings()
	w.p.removeDir(w.dir)
	w.p.m.writers.WithLabelValues(w.name).Dec()
	w.log.Info("writer detached", zap.String("why", w.closing), zap.Int64("batches", w.nBatches.Load()),
		zap.Int64("rows", w.nRows.Load()), zap.Int64("published", w.nPublished.Load()), zap.Int64("failed_rows", w.nFailed.Load()))
}

func (w *topicWriter) removeFiles() {
	for _, name := range []string{OutboundRingName(w.id), ResultsRingName(w.id)} {
		if err := os.Remove(filepath.Join(w.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			w.log.Warn("writer ring not removed", zap.String("file", name), zap.Error(err))
		}
	}
}

func (w *topicWriter) closeRings() {
	if w.out != nil {
		w.out.Close()
	}
	if w.res != nil {
		w.res.Close()
	}
}

// status describes the writer (safe from any goroutine).
func (w *topicWriter) status() WriterStatus {
	return WriterStatus{ID: w.id, Project: w.topic.Project, Topic: w.topic.Topic, Label: w.label, Dir: w.dir,
		Outbound: RingFile{File: w.out.Path(), InstanceID: strconv.FormatUint(w.out.InstanceID(), 10), Capacity: w.out.Capacity()},
		Results:  RingFile{File: w.res.Path(), InstanceID: strconv.FormatUint(w.res.InstanceID(), 10), Capacity: w.res.Capacity()},
		LingerMs: float64(w.wc.linger) / float64(time.Millisecond), MaxRequestBytes: w.wc.maxBytes, MaxMessages: w.wc.maxMsgs,
		ProducerAlive: w.producerAlive.Load(), Batches: w.nBatches.Load(), Rows: w.nRows.Load(), Published: w.nPublished.Load(),
		FailedRows: w.nFailed.Load(), InflightReqs: w.nInflight.Load()}
}
