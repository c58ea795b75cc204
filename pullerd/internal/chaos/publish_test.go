package chaos

import (
	"context"
	"hash/crc32"
	"math/rand/v2"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/pubsub-shm/pubsub-shm/pullerd/emulator"
)

// sent is what the accounting needs of a published message.
type sent struct {
	crc      uint32 // CRC-32 (IEEE, as Spark's crc32) of data
	size     int
	attrs    int
	attrsCRC uint32 // attrDigest of the attributes
}

// attrDigest is the CRC-32 of the attributes as "key=value\n" lines in key order (UTF-8),
// the digest ChaosQuery computes on the Spark side.
func attrDigest(attrs map[string]string) uint32 {
	keys := make([]string, 0, len(attrs))
	for k := range attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := crc32.NewIEEE()
	for _, k := range keys {
		h.Write([]byte(k))
		h.Write([]byte{'='})
		h.Write([]byte(attrs[k]))
		h.Write([]byte{'\n'})
	}
	return h.Sum32()
}

// publisher publishes generated messages into the emulator at a steady rate and keeps
// every message id it got back: the accounting's list of what must arrive.
type publisher struct {
	srv  *emulator.Server
	gen  func(i int) *pb.PubsubMessage
	stop chan struct{}
	done chan struct{}

	mu     sync.Mutex
	msgs   map[string]sent
	errors int
	n      atomic.Int64
}

// defaultMessage is the generator of the chaos tests: payloads of 0 to ~2 KiB (some
// empty), 0 to 3 attributes, some ordering keys.
func defaultMessage(i int) *pb.PubsubMessage {
	r := rand.New(rand.NewPCG(uint64(i), 42))
	size := 0
	if i%17 != 0 {
		size = 1 + r.IntN(2048)
	}
	data := make([]byte, size)
	for j := range data {
		data[j] = byte(r.Uint32())
	}
	m := &pb.PubsubMessage{Data: data}
	if n := i % 4; n > 0 {
		m.Attributes = map[string]string{}
		for j := range n {
			m.Attributes["k"+strconv.Itoa(j)] = "v-" + strconv.Itoa(i) + "-ü"
		}
	}
	if i%5 == 0 {
		m.OrderingKey = "key-" + strconv.Itoa(i%7)
	}
	return m
}

// startPublisher publishes rate messages per second (in chunks every 50 ms) until stopped;
// total > 0 stops it after that many.
func startPublisher(srv *emulator.Server, rate, total int, gen func(i int) *pb.PubsubMessage) *publisher {
	if gen == nil {
		gen = defaultMessage
	}
	p := &publisher{srv: srv, gen: gen, stop: make(chan struct{}), done: make(chan struct{}), msgs: map[string]sent{}}
	go p.run(rate, total)
	return p
}

func (p *publisher) run(rate, total int) {
	defer close(p.done)
	const tick = 50 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	start := time.Now()
	i := 0
	for total <= 0 || i < total {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		due := int(time.Since(start).Seconds() * float64(rate))
		if total > 0 {
			due = min(due, total)
		}
		for i < due {
			n := min(due-i, 500)
			msgs := make([]*pb.PubsubMessage, n)
			info := make([]sent, n)
			for j := range n {
				m := p.gen(i + j)
				msgs[j] = m
				info[j] = sent{crc: crc32.ChecksumIEEE(m.Data), size: len(m.Data), attrs: len(m.Attributes), attrsCRC: attrDigest(m.Attributes)}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			ids, err := p.srv.Publish(ctx, topic, msgs...)
			cancel()
			if err != nil {
				p.mu.Lock()
				p.errors++
				p.mu.Unlock()
				break // try again at the next tick
			}
			p.mu.Lock()
			for j, id := range ids {
				p.msgs[id] = info[j]
			}
			p.mu.Unlock()
			p.n.Add(int64(n))
			i += n
		}
	}
}

// Stop stops publishing and returns what was published.
func (p *publisher) Stop() map[string]sent {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
	return p.published()
}

// Wait waits until a publisher with a total has published everything.
func (p *publisher) Wait() map[string]sent {
	<-p.done
	return p.published()
}

func (p *publisher) published() map[string]sent {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]sent, len(p.msgs))
	for k, v := range p.msgs {
		out[k] = v
	}
	return out
}

// count returns how many messages were published so far.
func (p *publisher) count() int64 { return p.n.Load() }

// ackState returns, from the emulator, the ids acknowledged at least once and the number
// of messages acknowledged more than once.
func ackState(srv *emulator.Server) (acked map[string]int, multi int) {
	acked = map[string]int{}
	for _, m := range srv.Messages() {
		if m.Acks > 0 {
			acked[m.ID] = m.Acks
			if m.Acks > 1 {
				multi++
			}
		}
	}
	return acked, multi
}
