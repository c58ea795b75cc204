package arrowbatch

import (
	"context"
	"fmt"
	"testing"

	"github.com/pubsub-shm/pubsub-shm/ringbuf"
)

// BenchmarkEncode measures the Go side alone: rows added to a Batch and written straight
// into a 64 MiB ring, whose records a reader goroutine releases unread. Bytes are
// payload bytes.
func BenchmarkEncode(b *testing.B) {
	for _, size := range []int{100, 1024, 16 << 10} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			r := testRing(b, 64<<20)
			w, _ := ringbuf.NewWriter(r)
			rd, _ := ringbuf.NewReader(r)
			stop, done := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(done)
				for {
					select {
					case <-stop:
						return
					default:
					}
					rec, ok, _ := rd.Poll()
					if ok {
						rd.Release(rec.Position)
					}
				}
			}()
			defer func() { close(stop); <-done }() // never unmap under a running reader
			payload := make([]byte, size)
			rows := int(min(16384, (4<<20)/size))
			var bt Batch
			b.SetBytes(int64(size))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				bt.Add(Message{ID: "0123456789", PublishTimeUs: int64(i), Data: payload})
				if bt.Len() == rows {
					if _, _, err := bt.Encode(context.Background(), w, ringbuf.Yield{}); err != nil {
						b.Fatal(err)
					}
				}
			}
			bt.Encode(context.Background(), w, ringbuf.Yield{})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
