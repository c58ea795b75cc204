package ringbuf

import (
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// shmDir returns a fresh 0700 directory under /dev/shm (tmpfs, as in production),
// removed when the test ends; the test fails if anything is left in it.
func shmDir(t testing.TB) string {
	t.Helper()
	root := "/dev/shm"
	if _, err := os.Stat(root); err != nil {
		root = os.TempDir()
	}
	d, err := os.MkdirTemp(root, "ringbuf-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func testRing(t testing.TB, kind Kind, capacity int64) *Ring {
	t.Helper()
	name := "data-0.ring"
	if kind == KindCommit {
		name = "commit.ring"
	}
	r, err := Create(filepath.Join(shmDir(t), name), CreateOptions{Kind: kind, Capacity: capacity})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Unlink(); r.Close() })
	return r
}

// fillPayload writes the checksummed test payload the Java CheckConsumer verifies: for
// n >= 4 the last 4 bytes are the little-endian CRC32C of the bytes before them; shorter
// payloads hold (batchID + i) & 0xFF.
func fillPayload(b []byte, batchID int64, seed uint64) {
	if len(b) < 4 {
		for i := range b {
			b[i] = byte(batchID + int64(i))
		}
		return
	}
	x := seed ^ uint64(batchID)*0x9E3779B97F4A7C15
	body := b[:len(b)-4]
	i := 0
	for ; i+8 <= len(body); i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(body[i:], x)
	}
	for ; i < len(body); i++ {
		body[i] = byte(x >> (8 * (i & 7)))
	}
	binary.LittleEndian.PutUint32(b[len(b)-4:], crc32.Checksum(body, castagnoli))
}

func checkPayload(b []byte, batchID int64) bool {
	if len(b) < 4 {
		for i := range b {
			if b[i] != byte(batchID+int64(i)) {
				return false
			}
		}
		return true
	}
	return crc32.Checksum(b[:len(b)-4], castagnoli) == binary.LittleEndian.Uint32(b[len(b)-4:])
}
