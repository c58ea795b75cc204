package chaos

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pubsub-shm/pubsub-shm/ringbuf"
)

// The helpers are this test binary run again with CHAOS_HELPER set (TestMain dispatches
// to runHelper): small real processes that the tests kill, or run as another uid.

const helperEnv = "CHAOS_HELPER"

var (
	helperOnce sync.Once
	helperBin  string
	helperErr  error
)

// helperBinary copies this test binary into a directory every user can read, so that a
// helper can run as another uid (the go build cache is private to its owner).
func helperBinary(t testing.TB) string {
	t.Helper()
	helperOnce.Do(func() {
		var self string
		if self, helperErr = os.Executable(); helperErr != nil {
			return
		}
		var dir string
		if dir, helperErr = os.MkdirTemp("", "chaos-helper-"); helperErr != nil {
			return
		}
		helperDirs = append(helperDirs, dir)
		if helperErr = os.Chmod(dir, 0o755); helperErr != nil {
			return
		}
		helperBin = filepath.Join(dir, "chaos-helper")
		var in, out *os.File
		if in, helperErr = os.Open(self); helperErr != nil {
			return
		}
		defer in.Close()
		if out, helperErr = os.OpenFile(helperBin, os.O_CREATE|os.O_WRONLY, 0o755); helperErr != nil {
			return
		}
		if _, helperErr = io.Copy(out, in); helperErr != nil {
			out.Close()
			return
		}
		helperErr = out.Close()
	})
	if helperErr != nil {
		t.Fatalf("copy the test binary for helpers: %v", helperErr)
	}
	return helperBin
}

var helperDirs []string

// helperCmd returns the command running helper name with args; uid >= 0 runs it as that
// user (and group), with no supplementary groups.
func helperCmd(t testing.TB, uid int, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(helperBinary(t), args...)
	cmd.Env = append(os.Environ(), helperEnv+"="+name)
	if uid >= 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), Groups: []uint32{}}}
		cmd.Dir = "/"
	}
	return cmd
}

// runHelper runs the helper named by CHAOS_HELPER with the process arguments and returns
// the exit status.
func runHelper(name string, args []string) int {
	var err error
	switch name {
	case "probe":
		err = helperProbe(args)
	case "create-ring":
		var r *ringbuf.Ring
		r, err = ringbuf.Create(args[0], ringbuf.CreateOptions{Kind: ringbuf.KindData, Capacity: 4096})
		if err == nil {
			r.Close()
			fmt.Println("created")
		}
	case "claim-and-hang":
		err = helperClaimAndHang(args)
	case "commit-claim-and-hang":
		err = helperCommitClaimAndHang(args)
	default:
		err = fmt.Errorf("unknown helper %q", name)
	}
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	return 0
}

// helperProbe tries every way in to each path and prints one line per attempt:
// "<what> <path>: ok" or "<what> <path>: <error>".
func helperProbe(paths []string) error {
	for _, p := range paths {
		report := func(what string, err error) {
			if err == nil {
				fmt.Printf("%s %s: ok\n", what, p)
			} else {
				fmt.Printf("%s %s: %v\n", what, p, err)
			}
		}
		if strings.HasSuffix(p, ".sock") {
			c, err := net.DialTimeout("unix", p, time.Second)
			if err == nil {
				c.Close()
			}
			report("connect", err)
			continue
		}
		if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
			_, err := os.ReadDir(p)
			report("list", err)
			f, err := os.CreateTemp(p, "intruder-")
			if err == nil {
				f.Close()
				os.Remove(f.Name())
			}
			report("create-in", err)
			continue
		} else if err != nil {
			report("stat", err)
			continue
		}
		for _, mode := range []int{os.O_RDONLY, os.O_RDWR} {
			f, err := os.OpenFile(p, mode, 0)
			if err == nil {
				f.Close()
			}
			report(map[int]string{os.O_RDONLY: "open-read", os.O_RDWR: "open-write"}[mode], err)
		}
		r, err := ringbuf.Open(p, ringbuf.OpenOptions{})
		if err == nil {
			r.Close()
		}
		report("ringbuf.Open", err)
	}
	return nil
}

// helperClaimAndHang: args ring-path records. It attaches as the DATA ring's producer,
// publishes records RAW records of 1000 bytes, claims one more, writes half of it, prints
// "claimed <position>" and heart-beats until it is killed.
func helperClaimAndHang(args []string) error {
	n, _ := strconv.Atoi(args[1])
	r, err := ringbuf.Open(args[0], ringbuf.OpenOptions{Kind: ringbuf.KindData})
	if err != nil {
		return err
	}
	w, err := ringbuf.NewWriter(r)
	if err != nil {
		return err
	}
	for i := range n {
		c, err := w.TryClaim(ringbuf.TypeRaw, 0, 1000)
		if err != nil {
			return err
		}
		for j := range c.Body() {
			c.Body()[j] = byte(i)
		}
		if _, err := c.Commit(1); err != nil {
			return err
		}
	}
	c, err := w.TryClaim(ringbuf.TypeRaw, 0, 1000)
	if err != nil {
		return err
	}
	copy(c.Body()[:500], strings.Repeat("x", 500))
	fmt.Println("claimed", c.Position())
	for {
		w.Heartbeat()
		time.Sleep(100 * time.Millisecond)
	}
}

// helperCommitClaimAndHang: args commit-ring-path records. It publishes records COMMIT
// records (batches 1..records of partition 0), then claims the next slot by the protocol
// of FORMAT.md section 4 (CAS tail, CAS length 0 -> -64), writes half of it, prints
// "claimed <position>" and sleeps until it is killed.
func helperCommitClaimAndHang(args []string) error {
	n, _ := strconv.Atoi(args[1])
	r, err := ringbuf.Open(args[0], ringbuf.OpenOptions{Kind: ringbuf.KindCommit})
	if err != nil {
		return err
	}
	cw, err := ringbuf.NewCommitWriter(r)
	if err != nil {
		return err
	}
	for i := 1; i <= n; i++ {
		if err := cw.TryWrite(ringbuf.CommitRecord{Type: ringbuf.CommitTypeCommit, FirstBatchID: int64(i), LastBatchID: int64(i), DataInstanceID: 7}); err != nil {
			return err
		}
	}
	// The ringbuf API claims and publishes in one call; claim by hand on a second mapping.
	f, err := os.OpenFile(args[0], os.O_RDWR, 0)
	if err != nil {
		return err
	}
	fi, _ := f.Stat()
	mem, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return err
	}
	hl := int64(binary.LittleEndian.Uint32(mem[ringbuf.HeaderLengthOffset:]))
	capacity := int64(binary.LittleEndian.Uint64(mem[ringbuf.CapacityOffset:]))
	tail := (*int64)(unsafe.Pointer(&mem[ringbuf.TailOffset]))
	t := atomic.LoadInt64(tail)
	if !atomic.CompareAndSwapInt64(tail, t, t+ringbuf.CommitRecordLength) {
		return errors.New("tail moved")
	}
	slot := hl + t&(capacity-1)
	if !atomic.CompareAndSwapInt32((*int32)(unsafe.Pointer(&mem[slot+ringbuf.CmtLengthOffset])), 0, -ringbuf.CommitRecordLength) {
		return errors.New("slot not free")
	}
	binary.LittleEndian.PutUint32(mem[slot+ringbuf.CmtTypeOffset:], uint32(ringbuf.CommitTypeCommit))
	binary.LittleEndian.PutUint64(mem[slot+ringbuf.CmtPositionOffset:], uint64(t))
	fmt.Println("claimed", t)
	for {
		time.Sleep(time.Second)
	}
}
