package synth

import (
	"testing"
	"time"

	"github.com/pubsub-shm/pubsub-shm/ringbuf/arrowbatch"
)

func TestSourceDeterministicAndChecksummed(t *testing.T) {
	a, _ := New(Config{Seed: 7, Size: 10, MaxSize: 3000, Attributes: 2, OrderingKeys: 3})
	b, _ := New(Config{Seed: 7, Size: 10, MaxSize: 3000, Attributes: 2, OrderingKeys: 3})
	var ma, mb arrowbatch.Message
	ids := map[string]bool{}
	for i := 0; i < 5000; i++ {
		a.Next(&ma)
		b.Next(&mb)
		if string(ma.Data) != string(mb.Data) || ma.ID != mb.ID || len(ma.Attributes) != 2 || ma.OrderingKey == "" {
			t.Fatalf("message %d differs between equal seeds or lacks fields", i)
		}
		if !Verify(ma.Data) || len(ma.Data) < 10 || len(ma.Data) > 3000 {
			t.Fatalf("message %d: %d bytes, checksum ok %v", i, len(ma.Data), Verify(ma.Data))
		}
		if ids[ma.ID] {
			t.Fatalf("duplicate id %s", ma.ID)
		}
		ids[ma.ID] = true
		if i%100 == 99 {
			// ids written before Recycle must survive until then
			a.Recycle()
			b.Recycle()
			ids = map[string]bool{}
		}
	}
	c, _ := New(Config{Seed: 8, Size: 10, MaxSize: 3000})
	var mc arrowbatch.Message
	c.Next(&mc)
	a2, _ := New(Config{Seed: 7, Size: 10, MaxSize: 3000})
	a2.Next(&ma)
	if string(ma.Data) == string(mc.Data) {
		t.Error("different seeds gave the same payload")
	}
	bad := append([]byte(nil), ma.Data...)
	bad[0] ^= 1
	if Verify(bad) {
		t.Error("a flipped bit passed the checksum")
	}
	if _, err := New(Config{Size: 10, MaxSize: 5}); err == nil {
		t.Error("max size below size accepted")
	}
}

func TestPace(t *testing.T) {
	s, _ := New(Config{Seed: 1, Size: 1000, Rate: 1e6}) // 1 MB/s
	var m arrowbatch.Message
	start := time.Now()
	for i := 0; i < 200; i++ { // 200 KB: about 200 ms
		s.Next(&m)
		s.Pace()
	}
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Errorf("200 KB at 1 MB/s took %v", el)
	}
}
