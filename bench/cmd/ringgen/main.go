// Command ringgen is a synthetic stand-in for pullerd: it creates a ring set exactly as
// pullerd does (data-<p>.ring per partition with the message schema in the header, and
// commit.ring), fills the data rings from the synthetic source (bench/synth: checksummed
// payloads), and reads the commit ring, checking that every batch it wrote is committed
// exactly once and nothing else is. It lets the JVM side (Spark source, benches, soak) run
// without Pub/Sub.
//
// It prints "READY <dir>" once the rings exist, and at exit one JSON line with what each
// partition wrote and got committed. It exits on SIGINT/SIGTERM, or with
// -exit-when-committed once everything written has been committed, removing its ring
// files either way. Exit status 1 if a commit was duplicated, unknown or for a stale ring.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pubsub-shm/pubsub-shm/bench/synth"
	"github.com/pubsub-shm/pubsub-shm/ringbuf"
	"github.com/pubsub-shm/pubsub-shm/ringbuf/arrowbatch"
)

type config struct {
	dir               string
	partitions        int
	capacity          int64
	size, maxSize     int
	count             int64
	rate              float64
	seed              int64
	policy            arrowbatch.Policy
	exitWhenCommitted bool
	attributes        int
	orderingKeys      int
}

func main() {
	var c config
	flag.StringVar(&c.dir, "dir", "", "ring set directory to create (required; its parent must be 0700 and yours)")
	flag.IntVar(&c.partitions, "partitions", 2, "virtual partitions (data rings)")
	flag.Int64Var(&c.capacity, "capacity", 64<<20, "data ring capacity in bytes (power of two)")
	flag.IntVar(&c.size, "size", 1024, "payload bytes per message")
	flag.IntVar(&c.maxSize, "max-size", 0, "if > -size, payload sizes are uniform in [size, max-size]")
	flag.Int64Var(&c.count, "count", 100000, "messages per partition (0 = until stopped)")
	flag.Float64Var(&c.rate, "rate", 0, "payload bytes/s per partition (0 = as fast as the rings allow)")
	flag.Int64Var(&c.seed, "seed", 1, "generator seed (partition p uses seed+p)")
	flag.IntVar(&c.policy.MaxRows, "batch-rows", arrowbatch.DefaultPolicy.MaxRows, "rows per batch at most")
	flag.Int64Var(&c.policy.MaxBytes, "batch-bytes", arrowbatch.DefaultPolicy.MaxBytes, "payload bytes per batch at most")
	flag.DurationVar(&c.policy.Linger, "linger", arrowbatch.DefaultPolicy.Linger, "longest a batch stays open")
	flag.BoolVar(&c.exitWhenCommitted, "exit-when-committed", false, "exit once every batch written has been committed")
	flag.IntVar(&c.attributes, "attributes", 0, "attributes per message")
	flag.IntVar(&c.orderingKeys, "ordering-keys", 0, "distinct ordering keys (0 = none)")
	flag.Parse()
	if c.dir == "" || c.partitions < 1 {
		fmt.Fprintln(os.Stderr, "ringgen: -dir is required and -partitions must be >= 1")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sum, err := run(ctx, c)
	if sum != nil {
		b, _ := json.Marshal(sum)
		fmt.Println(string(b))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ringgen:", err)
		os.Exit(1)
	}
}

// PartitionSummary is what one partition wrote and got committed.
type PartitionSummary struct {
	Partition        int    `json:"partition"`
	InstanceID       uint64 `json:"instance_id"`
	Messages         int64  `json:"messages"`
	Bytes            int64  `json:"bytes"`
	Batches          int64  `json:"batches"`
	BatchesCommitted int64  `json:"batches_committed"`
	RowsCommitted    int64  `json:"rows_committed"`
}

// Summary is the JSON line printed at exit.
type Summary struct {
	Partitions       []*PartitionSummary `json:"partitions"`
	DuplicateCommits int64               `json:"duplicate_commits"`
	UnknownCommits   int64               `json:"unknown_commits"`
	StaleCommits     int64               `json:"stale_commits"`
	Nacks            int64               `json:"nacks"`
}

type part struct {
	ring *ringbuf.Ring
	mu   sync.Mutex
	rows map[int64]int32 // batch id -> rows, for written batches
	done map[int64]bool  // committed
	// early holds commits that arrived before the producer goroutine recorded the batch
	// (the record is visible in the ring before Flush returns); settled in settle.
	early   map[int64]bool
	sum     PartitionSummary
	written atomic.Bool // every message written and flushed
}

func run(ctx context.Context, c config) (*Summary, error) {
	if err := os.Mkdir(c.dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("create ring set %q: %w", c.dir, err)
	}
	if err := ringbuf.EnsureDir(c.dir); err != nil {
		return nil, err
	}
	defer os.RemoveAll(c.dir)
	schema, err := arrowbatch.SchemaMessage()
	if err != nil {
		return nil, err
	}
	commitRing, err := ringbuf.Create(filepath.Join(c.dir, "commit.ring"), ringbuf.CreateOptions{Kind: ringbuf.KindCommit, Capacity: 1 << 20, Replace: true})
	if err != nil {
		return nil, err
	}
	defer commitRing.Close()
	cr, err := ringbuf.NewCommitReader(commitRing)
	if err != nil {
		return nil, err
	}
	parts := make([]*part, c.partitions)
	for p := range parts {
		r, err := ringbuf.Create(filepath.Join(c.dir, fmt.Sprintf("data-%d.ring", p)),
			ringbuf.CreateOptions{Kind: ringbuf.KindData, Capacity: c.capacity, Partition: int32(p), Schema: schema, Replace: true})
		if err != nil {
			return nil, err
		}
		defer r.Close()
		parts[p] = &part{ring: r, rows: map[int64]int32{}, done: map[int64]bool{}, early: map[int64]bool{},
			sum: PartitionSummary{Partition: p, InstanceID: r.InstanceID()}}
	}
	fmt.Printf("READY %s\n", c.dir)
	os.Stdout.Sync()

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for _, pt := range parts {
		wg.Add(1)
		go func(pt *part) {
			defer wg.Done()
			if err := produce(ctx, c, pt); err != nil && ctx.Err() == nil {
				cancel(err)
			}
		}(pt)
	}
	sum := &Summary{}
	idle := ringbuf.DefaultIdle()
	lastBeat := time.Now()
	for ctx.Err() == nil {
		rec, ok, err := cr.Poll()
		if err != nil {
			fmt.Fprintln(os.Stderr, "ringgen: bad commit record:", err)
			sum.UnknownCommits++
			continue
		}
		if time.Since(lastBeat) > 200*time.Millisecond {
			cr.Heartbeat()
			lastBeat = time.Now()
		}
		if !ok {
			if c.exitWhenCommitted && allCommitted(parts) {
				break
			}
			idle.Idle(0)
			continue
		}
		idle.Reset()
		if int(rec.Partition) >= len(parts) {
			sum.UnknownCommits++
			continue
		}
		pt := parts[rec.Partition]
		if rec.DataInstanceID != pt.ring.InstanceID() {
			sum.StaleCommits++
			continue
		}
		if rec.Type != ringbuf.CommitTypeCommit {
			sum.Nacks++
			continue
		}
		pt.mu.Lock()
		for id := rec.FirstBatchID; id <= rec.LastBatchID; id++ {
			_, known := pt.rows[id]
			switch {
			case !known && pt.early[id]:
				sum.DuplicateCommits++
			case !known:
				pt.early[id] = true
			case pt.done[id]:
				sum.DuplicateCommits++
			default:
				pt.settle(id)
			}
		}
		pt.mu.Unlock()
	}
	cause := context.Cause(ctx)
	cancel(nil)
	wg.Wait()
	for _, pt := range parts {
		pt.mu.Lock()
		s := pt.sum
		sum.UnknownCommits += int64(len(pt.early)) // committed, never written
		pt.mu.Unlock()
		sum.Partitions = append(sum.Partitions, &s)
	}
	if cause != nil && !errors.Is(cause, context.Canceled) {
		return sum, cause
	}
	if sum.DuplicateCommits+sum.UnknownCommits+sum.StaleCommits > 0 {
		return sum, fmt.Errorf("%d duplicate, %d unknown and %d stale commits", sum.DuplicateCommits, sum.UnknownCommits, sum.StaleCommits)
	}
	return sum, nil
}

// settle marks a written batch committed. Callers hold pt.mu.
func (pt *part) settle(id int64) {
	pt.done[id] = true
	pt.sum.BatchesCommitted++
	pt.sum.RowsCommitted += int64(pt.rows[id])
}

func allCommitted(parts []*part) bool {
	for _, pt := range parts {
		if !pt.written.Load() {
			return false
		}
		pt.mu.Lock()
		n := len(pt.done) == len(pt.rows)
		pt.mu.Unlock()
		if !n {
			return false
		}
	}
	return true
}

func produce(ctx context.Context, c config, pt *part) error {
	w, err := ringbuf.NewWriter(pt.ring)
	if err != nil {
		return err
	}
	defer w.Close()
	bt, err := arrowbatch.NewBatcher(w, c.policy, nil)
	if err != nil {
		return err
	}
	src, err := synth.New(synth.Config{Seed: c.seed + int64(pt.sum.Partition), Size: c.size, MaxSize: c.maxSize, Rate: c.rate,
		Attributes: c.attributes, OrderingKeys: c.orderingKeys})
	if err != nil {
		return err
	}
	var bytes int64 // payload bytes written
	record := func(f arrowbatch.Flushed) {
		if f.Rows == 0 {
			return
		}
		src.Recycle()
		pt.mu.Lock()
		pt.rows[f.BatchID] = int32(f.Rows)
		pt.sum.Batches++
		pt.sum.Messages += int64(f.Rows)
		if pt.early[f.BatchID] {
			delete(pt.early, f.BatchID)
			pt.settle(f.BatchID)
		}
		pt.mu.Unlock()
	}
	var m arrowbatch.Message
	lastBeat := time.Now()
	for n := int64(0); c.count == 0 || n < c.count; n++ {
		if n&255 == 0 {
			if ctx.Err() != nil {
				return nil
			}
			if time.Since(lastBeat) > 200*time.Millisecond {
				w.Heartbeat()
				lastBeat = time.Now()
			}
			if bt.Due(time.Now()) {
				f, err := bt.Flush(ctx)
				if err != nil {
					return err
				}
				record(f)
			}
		}
		src.Next(&m)
		f, err := bt.Add(ctx, m)
		if err != nil {
			return err
		}
		record(f)
		bytes += int64(len(m.Data))
		src.Pace()
	}
	f, err := bt.Flush(ctx)
	if err != nil {
		return err
	}
	record(f)
	pt.mu.Lock()
	pt.sum.Bytes += bytes
	pt.mu.Unlock()
	pt.written.Store(true)
	// Keep heart-beating until told to stop: the consumer may still be reading.
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			w.Heartbeat()
		}
	}
}
