package ringbuf

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"unsafe"
)

// alignedCopy returns a copy of b in an 8-byte aligned buffer (atomics need it).
func alignedCopy(b []byte) []byte {
	words := make([]uint64, (len(b)+7)/8)
	out := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(words))), len(words)*8)[:len(b)]
	copy(out, b)
	return out
}

func goldenSeeds(f *testing.F) [][]byte {
	var seeds [][]byte
	for _, name := range []string{"data-raw.ring", "data-arrow.ring", "commit-java.ring"} {
		if b, err := os.ReadFile(filepath.Join(goldenDir, name)); err == nil {
			seeds = append(seeds, b)
		}
	}
	if len(seeds) == 0 {
		f.Fatal("no golden files to seed from")
	}
	return seeds
}

// FuzzRingImage feeds arbitrary ring files (seeded from the golden files) through header
// validation and, when the header is valid, through the data or commit reader. Any input
// must give records or errors: never a panic or an out-of-bounds access.
func FuzzRingImage(f *testing.F) {
	for _, s := range goldenSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<20 {
			return
		}
		mem := alignedCopy(b)
		if err := ValidateHeader("fuzz", mem, int64(len(mem)), 0); err != nil {
			return
		}
		r, _ := newRing("fuzz", mem)
		if r.kind == KindCommit {
			cr := &CommitReader{r: r, stuckAt: -1}
			for i := 0; i < 100; i++ {
				if _, ok, err := cr.Poll(); !ok && err == nil {
					break
				}
			}
			return
		}
		rd := &Reader{r: r, path: "fuzz", pos: r.Head(), stuckAt: -1}
		rd.polled.Store(rd.pos)
		for i := 0; i < 100; i++ {
			rec, ok, err := rd.Poll()
			if err != nil || !ok {
				return
			}
			_ = rec.Body[len(rec.Body)-1:]
			rd.Release(rec.Position)
		}
	})
}

// FuzzParseRecord feeds arbitrary record bytes at arbitrary positions to the record
// validator.
func FuzzParseRecord(f *testing.F) {
	for _, s := range goldenSeeds(f) {
		if len(s) > 4096 {
			f.Add(s[4096:], int64(0))
		}
	}
	f.Fuzz(func(t *testing.T, area []byte, pos int64) {
		if len(area) < 64 || len(area) > 1<<20 {
			return
		}
		capacity := int64(1)
		for capacity*2 <= int64(len(area)) {
			capacity *= 2
		}
		area = area[:capacity]
		idx := pos & (capacity - 1) &^ 63
		l := int64(int32(binary.LittleEndian.Uint32(area[idx:])))
		if l <= 0 {
			return
		}
		rec, err := parseRecord("fuzz", area, idx, pos, l, capacity/2)
		if err == nil && len(rec.Body) > 0 {
			_ = rec.Body[len(rec.Body)-1]
		}
	})
}

// FuzzParseCommitRecord feeds arbitrary 64-byte commit records to the validator.
func FuzzParseCommitRecord(f *testing.F) {
	for _, s := range goldenSeeds(f) {
		if len(s) >= 4096+64 {
			f.Add(s[4096:4096+64], int64(0))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte, pos int64) {
		rec, err := ParseCommitRecord("fuzz", b, pos)
		if err == nil && (rec.FirstBatchID < 1 || rec.LastBatchID < rec.FirstBatchID) && rec.Type != CommitTypePadding {
			t.Fatalf("accepted an invalid range: %+v", rec)
		}
	})
}
