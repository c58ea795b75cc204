// Package plot draws the figures of make bench and make soak as PNG files (gonum plot).
package plot

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Point is one peer at one message size.
type Point struct {
	Peer      string
	MsgSize   int
	BytesPerS float64
	// AllocPerMsg is the JVM heap allocated per message; NaN where no JVM runs.
	AllocPerMsg float64
}

var palette = []color.Color{
	color.RGBA{0x1f, 0x77, 0xb4, 0xff}, color.RGBA{0xff, 0x7f, 0x0e, 0xff}, color.RGBA{0x2c, 0xa0, 0x2c, 0xff},
	color.RGBA{0xd6, 0x27, 0x28, 0xff}, color.RGBA{0x94, 0x67, 0xbd, 0xff}, color.RGBA{0x8c, 0x56, 0x4b, 0xff},
	color.RGBA{0xe3, 0x77, 0xc2, 0xff}, color.RGBA{0x7f, 0x7f, 0x7f, 0xff},
}

// Bench writes the make bench figure to path: payload throughput (left) and JVM heap
// allocated per message (right) against message size, one line per peer, in the order
// the peers first appear in points. Both axes are logarithmic; values <= 0 are left out.
func Bench(path, title string, points []Point) error {
	var peers []string
	byPeer := map[string][]Point{}
	for _, p := range points {
		if _, ok := byPeer[p.Peer]; !ok {
			peers = append(peers, p.Peer)
		}
		byPeer[p.Peer] = append(byPeer[p.Peer], p)
	}
	tp := newLogLog(title+": payload throughput", "message size (bytes)", "GB/s")
	ap := newLogLog("JVM heap allocated per message", "message size (bytes)", "bytes / message")
	for i, peer := range peers {
		ps := byPeer[peer]
		sort.Slice(ps, func(a, b int) bool { return ps[a].MsgSize < ps[b].MsgSize })
		var thr, alloc plotter.XYs
		for _, p := range ps {
			if p.BytesPerS > 0 && p.MsgSize > 0 {
				thr = append(thr, plotter.XY{X: float64(p.MsgSize), Y: p.BytesPerS / 1e9})
			}
			if !math.IsNaN(p.AllocPerMsg) && p.AllocPerMsg > 0 && p.MsgSize > 0 {
				alloc = append(alloc, plotter.XY{X: float64(p.MsgSize), Y: p.AllocPerMsg})
			}
		}
		c := palette[i%len(palette)]
		if err := addLine(tp, peer, thr, c, i); err != nil {
			return err
		}
		if err := addLine(ap, peer, alloc, c, i); err != nil {
			return err
		}
	}
	return save(path, 12*vg.Inch, 5*vg.Inch, 1, 2, tp, ap)
}

// Second is one second of a soak.
type Second struct {
	T          float64
	BytesPerS  float64
	TargetBps  float64
	P50, P99   float64 // microseconds
	P999       float64
	RSSGoMiB   float64
	RSSJVMMiB  float64
	RingFill   float64 // 0..1
	RingSetMiB float64 // /dev/shm held by the soak's ring files
	ShmUsedMiB float64 // /dev/shm in use by everyone
}

// Soak writes the make soak figure to path: throughput against the target (top),
// end-to-end latency percentiles on a log scale (middle), and memory: RSS of both
// processes and the /dev/shm storage of the soak's rings (bottom).
func Soak(path, title string, secs []Second) error {
	tp := plot.New()
	tp.Title.Text = title + ": throughput"
	tp.X.Label.Text = "time (s)"
	tp.Y.Label.Text = "GB/s"
	tp.Legend.Top = true
	var thr, target plotter.XYs
	for _, s := range secs {
		thr = append(thr, plotter.XY{X: s.T, Y: s.BytesPerS / 1e9})
		if s.TargetBps > 0 {
			target = append(target, plotter.XY{X: s.T, Y: s.TargetBps / 1e9})
		}
	}
	tp.Y.Min = 0
	if err := addLine(tp, "payload", thr, palette[0], 0); err != nil {
		return err
	}
	if len(target) > 0 {
		if err := addLine(tp, "target", target, palette[3], -1); err != nil {
			return err
		}
	}

	lp := plot.New()
	lp.Title.Text = "end-to-end latency (publish_time to JVM read)"
	lp.X.Label.Text = "time (s)"
	lp.Y.Label.Text = "microseconds"
	lp.Y.Scale = plot.LogScale{}
	lp.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	lp.Legend.Top = true
	for i, q := range []struct {
		name string
		get  func(Second) float64
	}{{"p50", func(s Second) float64 { return s.P50 }}, {"p99", func(s Second) float64 { return s.P99 }}, {"p99.9", func(s Second) float64 { return s.P999 }}} {
		var xy plotter.XYs
		for _, s := range secs {
			if v := q.get(s); v > 0 {
				xy = append(xy, plotter.XY{X: s.T, Y: v})
			}
		}
		if err := addLine(lp, q.name, xy, palette[i], -1); err != nil {
			return err
		}
	}

	mp := plot.New()
	mp.Title.Text = "memory"
	mp.X.Label.Text = "time (s)"
	mp.Y.Label.Text = "MiB"
	mp.Y.Min = 0
	mp.Legend.Top = true
	for i, q := range []struct {
		name string
		get  func(Second) float64
	}{{"Go RSS", func(s Second) float64 { return s.RSSGoMiB }}, {"JVM RSS", func(s Second) float64 { return s.RSSJVMMiB }},
		{"ring files in /dev/shm", func(s Second) float64 { return s.RingSetMiB }}} {
		var xy plotter.XYs
		for _, s := range secs {
			xy = append(xy, plotter.XY{X: s.T, Y: q.get(s)})
		}
		if err := addLine(mp, q.name, xy, palette[i+4], -1); err != nil {
			return err
		}
	}
	return save(path, 10*vg.Inch, 11*vg.Inch, 3, 1, tp, lp, mp)
}

func newLogLog(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.X.Scale = plot.LogScale{}
	p.Y.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = true
	p.Legend.Left = true
	return p
}

// addLine adds a line (with points if shape >= 0) named name.
func addLine(p *plot.Plot, name string, xy plotter.XYs, c color.Color, shape int) error {
	if len(xy) == 0 {
		return nil
	}
	if shape < 0 {
		l, err := plotter.NewLine(xy)
		if err != nil {
			return err
		}
		l.Color = c
		l.Width = vg.Points(1.2)
		p.Add(l)
		p.Legend.Add(name, l)
		return nil
	}
	l, s, err := plotter.NewLinePoints(xy)
	if err != nil {
		return err
	}
	l.Color = c
	l.Width = vg.Points(1.5)
	s.Color = c
	s.Shape = draw.GlyphDrawer([]draw.GlyphDrawer{draw.CircleGlyph{}, draw.SquareGlyph{}, draw.TriangleGlyph{}, draw.PyramidGlyph{}, draw.CrossGlyph{}, draw.PlusGlyph{}}[shape%6])
	s.Radius = vg.Points(3)
	p.Add(l, s)
	p.Legend.Add(name, l, s)
	return nil
}

// save draws plots in a rows x cols grid into one PNG.
func save(path string, w, h vg.Length, rows, cols int, plots ...*plot.Plot) error {
	img := vgimg.New(w, h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	for i, p := range plots {
		p.Draw(tiles.At(dc, i%cols, i/cols))
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("plot: write %s: %w", path, err)
	}
	return f.Close()
}
