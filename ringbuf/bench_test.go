package ringbuf

import (
	"context"
	"fmt"
	"hash/crc32"
	"testing"
)

// BenchmarkRing moves records from a writer goroutine through a 16 MiB DATA ring to a
// reader that checksums every payload byte (CRC32C) and releases each record. It reports records/s
// and, through SetBytes, payload bytes/s.
func BenchmarkRing(b *testing.B) {
	for _, size := range []int{64, 1024, 64 << 10} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			r := testRing(b, KindData, 16<<20)
			w, _ := NewWriter(r)
			rd, _ := NewReader(r)
			src := make([]byte, size)
			for i := range src {
				src[i] = byte(i)
			}
			b.SetBytes(int64(size))
			b.ResetTimer()
			done := make(chan error, 1)
			go func() {
				idle := Yield{}
				for i := 0; i < b.N; i++ {
					c, err := w.Claim(context.Background(), TypeRaw, 0, size, idle)
					if err != nil {
						done <- err
						return
					}
					copy(c.Body(), src)
					c.Commit(1)
				}
				done <- nil
			}()
			var sum uint32
			idle := Yield{}
			for n := 0; n < b.N; {
				rec, ok, err := rd.Poll()
				if err != nil {
					b.Fatal(err)
				}
				if !ok {
					idle.Idle(0)
					continue
				}
				sum = crc32.Update(sum, castagnoli, rec.Body) // touches every byte
				rd.Release(rec.Position)
				n++
			}
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			_ = sum
		})
	}
}
