package status

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"time"
)

// view is what one request of the page shows, as HTML or as JSON.
type view struct {
	Title     string         `json:"title"`
	Now       time.Time      `json:"now"`
	Dropped   uint64         `json:"dropped"`
	Instances []instanceView `json:"instances"`
	Actions   []string       `json:"actions,omitempty"`    // page-wide actions' labels
	ActionLog []logEntry     `json:"action_log,omitempty"` // newest first

	// For the HTML page only.
	Refresh  int      `json:"-"` // seconds; 0: no refresh
	Timeline string   `json:"-"` // the span of the timelines, in words
	Alarms   []*alarm `json:"-"`
	Editable bool     `json:"-"` // the page has actions
}

type instanceView struct {
	Concern   string    `json:"concern"`
	Name      string    `json:"name"`
	State     string    `json:"state,omitempty"`
	Since     time.Time `json:"since,omitzero"` // zero when unknown
	FirstSeen time.Time `json:"first_seen"`
	LastEvent time.Time `json:"last_event,omitzero"`

	TransitionsTotal uint64       `json:"transitions_total"`
	Transitions      []transition `json:"transitions"` // newest first
	Events           []eventView  `json:"events"`
	OtherEvents      uint64       `json:"other_events,omitempty"` // beyond the counters kept
	Limit            int64        `json:"limit,omitempty"`        // of the last LimitChanged
	Stats            fields       `json:"stats,omitempty"`
	StatsError       string       `json:"stats_error,omitempty"`
	Actions          []string     `json:"actions,omitempty"`

	// For the HTML page only.
	Class    string    `json:"-"` // the state's colour class
	Segments []segment `json:"-"`
	Marks    []mark    `json:"-"`
}

type eventView struct {
	Kind       string `json:"kind"`
	Reason     string `json:"reason,omitempty"`
	LastMinute uint64 `json:"last_minute"`
	Total      uint64 `json:"total"`
}

type logEntry struct {
	At      time.Time `json:"at"`
	Concern string    `json:"concern,omitempty"`
	Name    string    `json:"name,omitempty"`
	Label   string    `json:"label"`
	Error   string    `json:"error,omitempty"`
}

type alarm struct {
	Concern, Name, State, Class string
	Since                       time.Time
}

// snapshot builds the view of the page at now. It calls the registered
// Stats sources with no lock held.
func (p *Page) snapshot(now time.Time) *view {
	p.mu.RLock()
	ins := make([]*instance, 0, len(p.instances))
	for _, in := range p.instances {
		ins = append(ins, in)
	}
	p.mu.RUnlock()
	dropped := p.dropped.Load()
	slices.SortFunc(ins, func(a, b *instance) int {
		return cmp.Or(cmp.Compare(a.concern, b.concern), cmp.Compare(a.name, b.name))
	})

	// The timelines span Config.Timeline, or less while every instance
	// is younger: since the oldest was first seen, and at least 10s.
	span := p.timeline
	if len(ins) > 0 {
		oldest := now
		for _, in := range ins {
			if in.firstSeen.Before(oldest) { // set before the instance was published
				oldest = in.firstSeen
			}
		}
		age := (now.Sub(oldest) + time.Second - 1).Truncate(time.Second)
		span = min(span, max(age, minTimeline))
	}

	v := &view{
		Title:     p.title,
		Now:       now,
		Dropped:   dropped,
		Instances: make([]instanceView, len(ins)),
		Refresh:   int(p.refresh / time.Second),
		Timeline:  words(span),
		Editable:  len(p.actions) > 0,
	}
	for _, a := range p.actions {
		if a.Concern == "" && a.Name == "" {
			v.Actions = append(v.Actions, a.Label)
		}
	}
	p.logMu.Lock()
	for i := len(p.log) - 1; i >= 0; i-- {
		v.ActionLog = append(v.ActionLog, p.log[i])
	}
	p.logMu.Unlock()

	for i, in := range ins {
		iv := &v.Instances[i]
		in.mu.Lock()
		eventState, stats := in.state, in.stats
		*iv = instanceView{
			Concern:          in.concern,
			Name:             in.name,
			State:            in.state,
			Since:            in.since,
			FirstSeen:        in.firstSeen,
			LastEvent:        in.lastEvent,
			TransitionsTotal: in.transCount,
			Transitions:      make([]transition, 0, len(in.trans)),
			Events:           make([]eventView, len(in.counters)),
			OtherEvents:      in.overflow,
			Limit:            in.limit,
		}
		// The ring holds the newest change just before transNext.
		for j := range in.trans {
			k := (in.transNext - 1 - j + 2*len(in.trans)) % len(in.trans)
			iv.Transitions = append(iv.Transitions, in.trans[k])
		}
		for j := range in.counters {
			c := &in.counters[j]
			iv.Events[j] = eventView{Kind: c.kind.String(), Reason: c.reason, LastMinute: c.lastMinute(now), Total: c.total}
		}
		in.mu.Unlock()

		slices.SortFunc(iv.Events, func(a, b eventView) int {
			return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Reason, b.Reason))
		})
		if stats != nil {
			iv.Stats, iv.StatsError = readStats(stats)
			if s, ok := iv.Stats.state(); ok && s != eventState {
				iv.State, iv.Since = s, time.Time{}
			}
		}
		for _, a := range p.actions {
			if a.Concern == in.concern && a.Name == in.name && (a.Concern != "" || a.Name != "") {
				iv.Actions = append(iv.Actions, a.Label)
			}
		}
		iv.Class = class(iv.State)
		iv.Segments, iv.Marks = timeline(iv, eventState, now, span)
		if iv.Class == "bad" || iv.Class == "warn" {
			v.Alarms = append(v.Alarms, &alarm{Concern: iv.Concern, Name: iv.Name, State: iv.State, Class: iv.Class, Since: iv.Since})
		}
	}
	return v
}

// class is the colour class of a state: the states Brace's concerns use
// have their own, any other state is "other".
func class(state string) string {
	switch state {
	case "":
		return "none"
	case "closed", "up":
		return "ok"
	case "open", "forced-open", "down":
		return "bad"
	case "half-open", "forced-closed":
		return "warn"
	}
	return "other"
}

// words writes d for a reader: "15 minutes", "90 seconds", "2 hours".
func words(d time.Duration) string {
	unit := func(n int64, s string) string {
		if n == 1 {
			return "1 " + s
		}
		return fmt.Sprintf("%d %ss", n, s)
	}
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		return unit(int64(d/time.Hour), "hour")
	case d >= time.Minute && d%time.Minute == 0:
		return unit(int64(d/time.Minute), "minute")
	case d >= time.Second && d%time.Second == 0:
		return unit(int64(d/time.Second), "second")
	}
	return d.String()
}

// field is one gauge read from a Stats value.
type field struct {
	Name  string
	Value any // a number, a bool or a string
}

// fields keeps the order of a Stats struct's fields, in HTML and JSON.
type fields []field

// MarshalJSON writes the fields as one JSON object, in order.
func (fs fields) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range fs {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(f.Name)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(f.Value)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// state returns the value of a top-level field State that is a string.
func (fs fields) state() (string, bool) {
	for _, f := range fs {
		if f.Name == "State" {
			s, ok := f.Value.(string)
			return s, ok
		}
	}
	return "", false
}

// readStats calls stats and flattens what it returns into fields. A panic
// in stats is reported as an error.
func readStats(stats func() any) (fs fields, errText string) {
	defer func() {
		if r := recover(); r != nil {
			fs, errText = nil, clip(fmt.Sprintf("Stats panicked: %v", r))
		}
	}()
	v := reflect.ValueOf(stats())
	if v.Kind() == reflect.Struct {
		flatten(v, "", 0, &fs)
	} else if x, ok := scalar(v); ok {
		fs = fields{{Name: "Value", Value: x}}
	}
	return fs, ""
}

var stringer = reflect.TypeFor[fmt.Stringer]()

// flatten appends the exported scalar fields of the struct v, and of its
// nested structs up to three levels deep, to fs.
func flatten(v reflect.Value, prefix string, depth int, fs *fields) {
	t := v.Type()
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		fv := v.Field(i)
		if fv.Kind() == reflect.Pointer {
			if fv.IsNil() {
				continue
			}
			fv = fv.Elem()
		}
		if x, ok := scalar(fv); ok {
			*fs = append(*fs, field{Name: prefix + sf.Name, Value: x})
		} else if fv.Kind() == reflect.Struct && depth < 3 {
			flatten(fv, prefix+sf.Name+".", depth+1, fs)
		}
	}
}

// scalar returns v as a value the page shows: a Stringer's String(), a
// number, a bool or a string.
func scalar(v reflect.Value) (any, bool) {
	if !v.IsValid() {
		return nil, false
	}
	if v.Type().Implements(stringer) && v.CanInterface() {
		return v.Interface().(fmt.Stringer).String(), true
	}
	switch v.Kind() {
	case reflect.Bool:
		return v.Bool(), true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int(), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return v.Uint(), true
	case reflect.Float32, reflect.Float64:
		f := v.Float()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Sprint(f), true // JSON has no NaN or infinity
		}
		return f, true
	case reflect.String:
		return v.String(), true
	}
	return nil, false
}
