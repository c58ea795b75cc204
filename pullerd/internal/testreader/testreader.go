// Package testreader is a Go reader of a pullerd ring set, speaking the same protocol as
// the JVM reader: it polls the DATA rings, decodes the Arrow batches with arrow-go's IPC
// reader, heart-beats as the consumer, releases records, and writes COMMIT records. Tests
// and benchmarks use it in place of Spark.
package testreader

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/pubsub-shm/pubsub-shm/ringbuf"
	"github.com/pubsub-shm/pubsub-shm/ringbuf/arrowbatch"
)

// ErrRecreated: the DATA ring was replaced by a new incarnation (pullerd restarted, or
// recreated it after declaring this reader dead). Reopen it.
var ErrRecreated = errors.New("testreader: ring was recreated")

// Message is one decoded row, copied out of the ring.
type Message struct {
	ID              string
	PublishTimeUs   int64
	Data            []byte
	Attributes      map[string]string
	OrderingKey     string
	HasOrderingKey  bool
	DeliveryAttempt int32
}

// Batch is one ARROW record read from a DATA ring.
type Batch struct {
	Partition  int
	InstanceID uint64
	BatchID    int64
	Rows       int
	Messages   []Message // nil unless decoding
}

// Set reads one ring set. Poll is for one goroutine; the heartbeat runs in its own.
type Set struct {
	dir    string
	decode bool
	parts  []*part
	commit *ringbuf.Ring
	cw     *ringbuf.CommitWriter

	mu       sync.Mutex // guards the rings against the heartbeat goroutine during Reopen
	beat     atomic.Bool
	stopBeat chan struct{}
	wg       sync.WaitGroup
}

type part struct {
	idx  int
	path string
	r    *ringbuf.Ring
	rd   *ringbuf.Reader
}

// Open attaches to the ring set in dir with partitions DATA rings. With decode, Poll
// decodes every row.
func Open(dir string, partitions int, decode bool) (*Set, error) {
	s := &Set{dir: dir, decode: decode, stopBeat: make(chan struct{})}
	var err error
	s.commit, err = ringbuf.Open(filepath.Join(dir, "commit.ring"), ringbuf.OpenOptions{Kind: ringbuf.KindCommit, NotReadyTimeout: time.Second})
	if err != nil {
		return nil, err
	}
	if s.cw, err = ringbuf.NewCommitWriter(s.commit); err != nil {
		s.commit.Close()
		return nil, err
	}
	for i := range partitions {
		p := &part{idx: i, path: filepath.Join(dir, "data-"+strconv.Itoa(i)+".ring")}
		if err := p.open(); err != nil {
			s.Close()
			return nil, err
		}
		s.parts = append(s.parts, p)
	}
	s.beat.Store(true)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-s.stopBeat:
				return
			case <-t.C:
			}
			if s.beat.Load() {
				s.mu.Lock()
				for _, p := range s.parts {
					p.rd.Heartbeat()
				}
				s.commit.Heartbeat(ringbuf.Producer)
				s.mu.Unlock()
			}
		}
	}()
	return s, nil
}

func (p *part) open() error {
	r, err := ringbuf.Open(p.path, ringbuf.OpenOptions{Kind: ringbuf.KindData, NotReadyTimeout: time.Second})
	if err != nil {
		return err
	}
	rd, err := ringbuf.NewReader(r)
	if err != nil {
		r.Close()
		return err
	}
	p.r, p.rd = r, rd
	return nil
}

// Partitions returns the number of DATA rings.
func (s *Set) Partitions() int { return len(s.parts) }

// InstanceID returns the instance id of the DATA ring this reader has mapped.
func (s *Set) InstanceID(p int) uint64 { return s.parts[p].r.InstanceID() }

// StopHeartbeat simulates a reader that hangs: it stops stamping heartbeats (and the
// caller stops polling), without detaching.
func (s *Set) StopHeartbeat() { s.beat.Store(false) }

// Check returns an error wrapping ErrRecreated if partition p's file now holds another
// incarnation, or ringbuf.ErrPeerDead if its producer is gone. It is the check a reader
// makes when a ring stays silent.
func (s *Set) Check(p int, producerTimeout time.Duration) error {
	pt := s.parts[p]
	r, err := ringbuf.Open(pt.path, ringbuf.OpenOptions{Kind: ringbuf.KindData})
	if err != nil {
		return fmt.Errorf("%w: reopening %q: %v", ErrRecreated, pt.path, err)
	}
	id := r.InstanceID()
	r.Close()
	if id != pt.r.InstanceID() {
		return fmt.Errorf("%w: %q has instance id %d, this reader mapped %d", ErrRecreated, pt.path, id, pt.r.InstanceID())
	}
	if alive, why := pt.r.PeerAlive(ringbuf.Producer, producerTimeout); !alive {
		return fmt.Errorf("%w: %q: %s", ringbuf.ErrPeerDead, pt.path, why)
	}
	return nil
}

// Reopen maps partition p's file again (after ErrRecreated) as its consumer.
func (s *Set) Reopen(p int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	pt := s.parts[p]
	old := pt.r
	if err := pt.open(); err != nil {
		return err
	}
	old.Close()
	return nil
}

// ReopenCommit maps the commit ring again (after pullerd restarted).
func (s *Set) ReopenCommit() error {
	r, err := ringbuf.Open(filepath.Join(s.dir, "commit.ring"), ringbuf.OpenOptions{Kind: ringbuf.KindCommit, NotReadyTimeout: time.Second})
	if err != nil {
		return err
	}
	cw, err := ringbuf.NewCommitWriter(r)
	if err != nil {
		r.Close()
		return err
	}
	s.mu.Lock()
	old := s.commit
	s.commit, s.cw = r, cw
	s.mu.Unlock()
	old.Close()
	return nil
}

// Poll returns the next batch of partition p, if any, and releases its record (the rows
// are copied out when decoding).
func (s *Set) Poll(p int) (Batch, bool, error) {
	pt := s.parts[p]
	rec, ok, err := pt.rd.Poll()
	if err != nil || !ok {
		return Batch{}, false, err
	}
	b := Batch{Partition: p, InstanceID: pt.r.InstanceID(), BatchID: rec.BatchID, Rows: int(rec.RowCount)}
	if rec.Type == ringbuf.TypeArrow && s.decode {
		b.Messages, err = decode(pt.r.Schema(), rec)
		if err != nil {
			return b, false, fmt.Errorf("partition %d batch %d: %w", p, rec.BatchID, err)
		}
	}
	if err := pt.rd.Release(rec.Position); err != nil {
		return b, false, err
	}
	return b, true, nil
}

// Commit writes a COMMIT record for batches first..last of partition p's incarnation
// instanceID.
func (s *Set) Commit(p int, instanceID uint64, first, last int64) error {
	return s.write(ringbuf.CommitTypeCommit, p, instanceID, first, last)
}

// Nack writes a NACK record.
func (s *Set) Nack(p int, instanceID uint64, first, last int64) error {
	return s.write(ringbuf.CommitTypeNack, p, instanceID, first, last)
}

func (s *Set) write(t ringbuf.CommitType, p int, instanceID uint64, first, last int64) error {
	rec := ringbuf.CommitRecord{Type: t, FirstBatchID: first, LastBatchID: last, Partition: int32(p), DataInstanceID: instanceID}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := s.cw.TryWrite(rec)
		if !errors.Is(err, ringbuf.ErrFull) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("commit ring full for 10 s (is ackd running?): %w", err)
		}
		time.Sleep(time.Millisecond)
	}
}

// Close detaches from every ring and unmaps them.
func (s *Set) Close() {
	select {
	case <-s.stopBeat:
	default:
		close(s.stopBeat)
	}
	s.wg.Wait()
	for _, p := range s.parts {
		p.rd.Close()
		p.r.Close()
	}
	if s.commit != nil {
		s.commit.Close()
	}
}

// decode reads one ARROW record with arrow-go's IPC reader and copies the rows out.
func decode(schemaMsg []byte, rec ringbuf.Record) ([]Message, error) {
	var stream bytes.Buffer
	stream.Write(schemaMsg)
	stream.Write(rec.Meta)
	stream.Write(rec.Body)
	stream.Write([]byte{0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0})
	rd, err := ipc.NewReader(&stream, ipc.WithAllocator(memory.DefaultAllocator))
	if err != nil {
		return nil, err
	}
	defer rd.Release()
	if !rd.Next() {
		return nil, fmt.Errorf("no record batch: %v", rd.Err())
	}
	b := rd.RecordBatch()
	ids := b.Column(arrowbatch.ColMessageID).(*array.String)
	ts := b.Column(arrowbatch.ColPublishTime).(*array.Timestamp)
	data := b.Column(arrowbatch.ColData).(*array.Binary)
	attrs := b.Column(arrowbatch.ColAttributes).(*array.Map)
	keys := attrs.Keys().(*array.String)
	vals := attrs.Items().(*array.String)
	ok := b.Column(arrowbatch.ColOrderingKey).(*array.String)
	da := b.Column(arrowbatch.ColDeliveryAttempt).(*array.Int32)
	out := make([]Message, b.NumRows())
	for i := range out {
		m := Message{ID: ids.Value(i), PublishTimeUs: int64(ts.Value(i)), Data: bytes.Clone(data.Value(i)),
			HasOrderingKey: !ok.IsNull(i)}
		if m.Data == nil {
			m.Data = []byte{}
		}
		if m.HasOrderingKey {
			m.OrderingKey = ok.Value(i)
		}
		if !da.IsNull(i) {
			m.DeliveryAttempt = da.Value(i)
		}
		start, end := attrs.ValueOffsets(i)
		m.Attributes = make(map[string]string, end-start)
		for j := start; j < end; j++ {
			m.Attributes[keys.Value(int(j))] = vals.Value(int(j))
		}
		out[i] = m
	}
	return out, nil
}
