package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"

	"go.uber.org/zap"

	"github.com/pubsub-shm/pubsub-shm/ringbuf"
)

// File names inside a ring set directory (docs/FORMAT.md section 1).
const (
	CommitRingName    = "commit.ring"
	ControlSocketName = "control.sock"
	MetricsAddrName   = "metrics.addr"
)

// DataRingName returns the file name of partition p's DATA ring, data-<p>.ring.
func DataRingName(p int) string { return "data-" + strconv.Itoa(p) + ".ring" }

var (
	dataRingRE = regexp.MustCompile(`^data-(0|[1-9][0-9]*)\.ring$`)
	tmpFileRE  = regexp.MustCompile(`^\..+\.tmp-([0-9]+)$`)
)

// ErrInUse: a ring set belongs to another live pullerd.
var ErrInUse = errors.New("pullerd: ring set in use by another live pullerd")

// prepareSet creates a ring set directory (0700) or takes over one a previous pullerd
// left behind: it refuses a set whose rings belong to a live process, and removes the
// files that the new rings will not replace (DATA rings of partitions beyond partitions,
// temporary files of dead creators, a stale socket and address file). It returns the
// instance ids of the stale rings it found, by file name, for the log.
func prepareSet(dir string, partitions int, log *zap.Logger) (map[string]uint64, error) {
	if err := ringbuf.EnsureDir(filepath.Dir(dir)); err != nil {
		return nil, fmt.Errorf("ring root: %w", err)
	}
	if err := ringbuf.EnsureDir(dir); err != nil {
		return nil, fmt.Errorf("ring set: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read ring set %q: %w", dir, err)
	}
	stale := map[string]uint64{}
	var remove []string
	for _, e := range ents {
		name := e.Name()
		path := filepath.Join(dir, name)
		switch {
		case name == CommitRingName || dataRingRE.MatchString(name):
			role := ringbuf.Producer // pullerd produces DATA rings...
			if name == CommitRingName {
				role = ringbuf.Consumer // ...and consumes the COMMIT ring
			}
			id, err := checkStale(path, role)
			if err != nil {
				return nil, err
			}
			stale[name] = id
			if m := dataRingRE.FindStringSubmatch(name); m != nil {
				if p, _ := strconv.Atoi(m[1]); p >= partitions {
					remove = append(remove, path)
				}
			}
		case tmpFileRE.MatchString(name):
			pid, _ := strconv.ParseInt(tmpFileRE.FindStringSubmatch(name)[1], 10, 64)
			if !ringbuf.ProcessAlive(pid, 0) || pid == int64(os.Getpid()) {
				remove = append(remove, path)
			}
		case name == ControlSocketName || name == MetricsAddrName:
			remove = append(remove, path)
		default:
			log.Warn("unknown file in ring set directory left alone", zap.String("path", path))
		}
	}
	for _, path := range remove {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove stale %q: %w", path, err)
		}
	}
	if len(stale) > 0 {
		log.Info("taking over a ring set left by a previous pullerd; its rings are recreated with new instance ids",
			zap.String("dir", dir), zap.Any("stale_instance_ids", stale))
	}
	return stale, nil
}

// checkStale opens an existing ring and returns its instance id if the process in
// pullerd's role on it (role) is gone; ErrInUse if it still runs. A file that is not a
// valid ring is stale too (instance id 0).
func checkStale(path string, role ringbuf.Role) (uint64, error) {
	r, err := ringbuf.Open(path, ringbuf.OpenOptions{})
	if err != nil {
		if errors.Is(err, ringbuf.ErrPermission) {
			return 0, fmt.Errorf("stale ring %q: %w (remove it by hand)", path, err)
		}
		return 0, nil
	}
	defer r.Close()
	id := r.Peer(role)
	if id.Pid != 0 && id.Pid != int64(os.Getpid()) && !id.Closed && ringbuf.ProcessAlive(id.Pid, id.StartTicks) {
		return 0, fmt.Errorf("%w: %q has %s pid %d, which is still running; stop it, or give this pullerd another -shm-dir",
			ErrInUse, path, role, id.Pid)
	}
	return r.InstanceID(), nil
}

// createRing creates (or replaces) a ring file with a new instance id.
func createRing(path string, o ringbuf.CreateOptions) (*ringbuf.Ring, error) {
	o.Replace = true
	r, err := ringbuf.Create(path, o)
	if err != nil {
		return nil, fmt.Errorf("create ring: %w", err)
	}
	return r, nil
}
