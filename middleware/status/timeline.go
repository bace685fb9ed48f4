package status

import (
	"math"
	"time"
)

const (
	timelineWidth = 300              // the width of a timeline, in SVG user units
	minTimeline   = 10 * time.Second // the shortest span a timeline draws
)

// segment is a stretch of time an instance spent in one state, drawn as a
// rectangle of the timeline.
type segment struct {
	X, W  float64
	Class string
	Title string
}

// mark is a state change, drawn as a line across the timeline.
type mark struct {
	X     float64
	Title string
}

// timeline draws the instance's states over the span of time ending at
// now, from its transitions (newest first in iv.Transitions). eventState
// is the state its last change entered.
func timeline(iv *instanceView, eventState string, now time.Time, span time.Duration) ([]segment, []mark) {
	start := now.Add(-span)
	x := func(t time.Time) float64 {
		f := float64(t.Sub(start)) / float64(span) * timelineWidth
		return math.Round(min(max(f, 0), timelineWidth)*10) / 10
	}
	var segs []segment
	add := func(from, to time.Time, state string) {
		if state == "" || !to.After(start) {
			return
		}
		x0, x1 := x(from), x(to)
		if x1-x0 < 0.1 {
			return // too short to see: the change's mark shows it
		}
		title := state + " from " + clock(from) + " to " + clock(to)
		if !from.After(start) {
			title = state + " until " + clock(to)
		}
		segs = append(segs, segment{X: x0, W: math.Round((x1-x0)*10) / 10, Class: class(state), Title: title})
	}
	tr := iv.Transitions
	if len(tr) == 0 {
		add(iv.FirstSeen, now, iv.State)
		return segs, nil
	}
	// Before the oldest change kept, the instance was in its From state
	// since it was first seen, or, when older changes were forgotten,
	// since some time before the oldest kept.
	t0 := iv.FirstSeen
	if iv.TransitionsTotal > uint64(len(tr)) {
		t0 = start
	}
	cur := tr[len(tr)-1].From
	var marks []mark
	for i := len(tr) - 1; i >= 0; i-- {
		t := tr[i]
		add(t0, t.At, cur)
		if !t.At.Before(start) {
			m := mark{X: x(t.At), Title: clock(t.At) + " " + t.From + " → " + t.To}
			if n := len(marks); n > 0 && marks[n-1].X+0.5 > m.X {
				marks[n-1] = m // one mark per half unit: the latest change
			} else {
				marks = append(marks, m)
			}
		}
		cur, t0 = t.To, t.At
	}
	add(t0, now, eventState)
	return segs, marks
}

// clock writes t as the page shows times: UTC, to the second.
func clock(t time.Time) string { return t.UTC().Format("15:04:05") }
