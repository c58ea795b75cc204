// Package synth is the synthetic message source of the benches and soak tests: a fixed
// seed, fixed or random message sizes and an optional rate, producing messages exactly as
// pullerd hands them to the Arrow batcher. Every payload carries its own checksum so a
// consumer can verify each byte: for a payload of n >= 4 bytes the last 4 bytes are the
// little-endian CRC32C (Castagnoli) of the n-4 bytes before them; shorter payloads are
// all zero.
package synth

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/rand"
	"strconv"
	"time"
	"unsafe"

	"github.com/pubsub-shm/pubsub-shm/ringbuf/arrowbatch"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Config of a Source.
type Config struct {
	Seed    int64
	Size    int     // payload bytes per message
	MaxSize int     // if > Size, sizes are uniform in [Size, MaxSize]
	Rate    float64 // payload bytes per second; 0 = as fast as possible
	// Attributes per message (keys "a0".."aN", values of 8 bytes); 0 = none.
	Attributes int
	// OrderingKeys: number of distinct ordering keys cycled through; 0 = none.
	OrderingKeys int
}

// Source produces messages. Not safe for concurrent use.
type Source struct {
	cfg     Config
	pool    [][]byte // pre-made checksummed payloads, referenced (not copied) by messages
	rng     *rand.Rand
	n       int64
	arena   []byte // message ids of the open batch
	attrs   []map[string]string
	keys    []string
	start   time.Time
	sent    int64
	nowUs   int64
	stamped int64
}

// poolSize distinct payloads are cycled through (randomPoolSize with random sizes):
// enough to defeat caching tricks, small enough to build quickly.
const (
	poolSize       = 64
	randomPoolSize = 256
)

// New returns a Source.
func New(cfg Config) (*Source, error) {
	if cfg.Size < 0 || (cfg.MaxSize > 0 && cfg.MaxSize < cfg.Size) || cfg.MaxSize > 64<<20 || cfg.Size > 64<<20 {
		return nil, fmt.Errorf("synth: bad message size %d..%d (need 0 <= size <= max size <= 64 MiB)", cfg.Size, cfg.MaxSize)
	}
	if cfg.Rate < 0 {
		return nil, fmt.Errorf("synth: rate %v must be >= 0", cfg.Rate)
	}
	s := &Source{cfg: cfg, rng: rand.New(rand.NewSource(cfg.Seed))}
	// Payloads are made and checksummed once, then referenced by many messages (a
	// message's bytes must not change until its batch is written). Random sizes use a
	// larger pool of pre-sized payloads.
	n := poolSize
	if cfg.MaxSize > cfg.Size {
		n = randomPoolSize
	}
	for i := 0; i < n; i++ {
		size := cfg.Size
		if cfg.MaxSize > cfg.Size {
			size += s.rng.Intn(cfg.MaxSize - cfg.Size + 1)
		}
		p := make([]byte, size)
		s.rng.Read(p)
		Checksum(p)
		s.pool = append(s.pool, p)
	}
	if cfg.Attributes > 0 {
		for i := 0; i < 16; i++ {
			m := map[string]string{}
			for a := 0; a < cfg.Attributes; a++ {
				m["a"+strconv.Itoa(a)] = fmt.Sprintf("v%07d", s.rng.Intn(1e7))
			}
			s.attrs = append(s.attrs, m)
		}
	}
	for i := 0; i < cfg.OrderingKeys; i++ {
		s.keys = append(s.keys, "key-"+strconv.Itoa(i))
	}
	return s, nil
}

// Checksum fills the last 4 bytes of p with the CRC32C of the rest (zeroes p if shorter
// than 4 bytes).
func Checksum(p []byte) {
	if len(p) < 4 {
		clear(p)
		return
	}
	binary.LittleEndian.PutUint32(p[len(p)-4:], crc32.Checksum(p[:len(p)-4], castagnoli))
}

// Verify reports whether p carries a valid checksum.
func Verify(p []byte) bool {
	if len(p) < 4 {
		for _, b := range p {
			if b != 0 {
				return false
			}
		}
		return true
	}
	return crc32.Checksum(p[:len(p)-4], castagnoli) == binary.LittleEndian.Uint32(p[len(p)-4:])
}

// Next fills m with the next message. The message references memory of the Source that
// stays valid until Recycle: call Recycle after the batch holding it was written.
func (s *Source) Next(m *arrowbatch.Message) {
	p := s.pool[s.n%int64(len(s.pool))]
	size := len(p)
	// ids: decimal counters in an arena
	start := len(s.arena)
	s.arena = strconv.AppendInt(s.arena, s.n, 10)
	if s.n-s.stamped >= 64 || s.nowUs == 0 {
		s.nowUs = time.Now().UnixMicro()
		s.stamped = s.n
	}
	*m = arrowbatch.Message{
		ID:            unsafe.String(unsafe.SliceData(s.arena[start:]), len(s.arena)-start),
		PublishTimeUs: s.nowUs,
		Data:          p,
	}
	if len(s.attrs) > 0 {
		m.Attributes = s.attrs[s.n%int64(len(s.attrs))]
	}
	if len(s.keys) > 0 {
		m.OrderingKey = s.keys[s.n%int64(len(s.keys))]
	}
	s.n++
	s.sent += int64(size)
}

// Recycle releases the ids of written batches. Messages from earlier Next calls become
// invalid.
func (s *Source) Recycle() {
	if cap(s.arena)-len(s.arena) < 64 {
		s.arena = make([]byte, 0, max(2*cap(s.arena), 1<<16))
	} else {
		s.arena = s.arena[len(s.arena):]
	}
}

// Pace sleeps as needed to hold the configured byte rate.
func (s *Source) Pace() {
	if s.cfg.Rate == 0 {
		return
	}
	if s.start.IsZero() {
		s.start = time.Now()
	}
	due := s.start.Add(time.Duration(float64(s.sent) / s.cfg.Rate * float64(time.Second)))
	if d := time.Until(due); d > 100*time.Microsecond {
		time.Sleep(d)
	}
}

// Count returns messages produced; Bytes payload bytes produced.
func (s *Source) Count() int64 { return s.n }

// Bytes returns the payload bytes produced.
func (s *Source) Bytes() int64 { return s.sent }

// Payload returns the payload of message i (counting from 0), the bytes Next hands out
// as the i-th message's Data, without producing a message. The slice is shared: do not
// modify it.
func (s *Source) Payload(i int64) []byte { return s.pool[i%int64(len(s.pool))] }
