package status

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/brace-go/brace/middleware"
)

// Config configures a [Page]. The zero value is a read-only page titled
// "Brace status" that keeps up to 1000 instances and their last 20 state
// changes, refreshes itself every 5 seconds and draws the last 15 minutes
// in its timelines.
type Config struct {
	// Title is the page's title. Default "Brace status".
	Title string
	// MaxInstances caps the instances (concern and name pairs) the page
	// keeps. The events of an instance first seen beyond the cap are
	// counted as dropped and otherwise ignored, and Register refuses it.
	// Default 1000; negative is an error.
	MaxInstances int
	// Transitions is how many state changes are kept per instance, the
	// newest. Default 20; negative or above 1000 is an error.
	Transitions int
	// Refresh is how often the HTML page reloads itself. Default 5s;
	// negative turns refreshing off.
	Refresh time.Duration
	// Timeline is the span of time drawn in each instance's timeline of
	// state changes, ending now; while every instance is younger, the
	// timelines draw only since the oldest was first seen (at least 10
	// seconds). Default 15m; negative is an error.
	Timeline time.Duration
	// Actions are the operator actions the page offers, as buttons that
	// POST. Nil makes the page read-only: it refuses every POST. See
	// [Action].
	Actions []Action
	// CrossOrigin guards the actions against cross-site requests. Nil
	// uses http.NewCrossOriginProtection(), which refuses a POST that a
	// browser marks as cross-origin; give your own to trust other origins
	// (a proxy's) with AddTrustedOrigin.
	CrossOrigin *http.CrossOriginProtection
}

// Action is an operator action offered by the page, such as forcing a
// breaker open or resetting it:
//
//	status.Action{Concern: "breaker", Name: "payments", Label: "reset", Do: b.Reset}
//
// The page shows it as a button beside the instance named by Concern and
// Name, or, when both are empty, at the top of the page. A click POSTs a
// form; Do runs on that request, with its context, only for a POST that
// passes the page's cross-origin check, never for a GET. The page keeps
// the last 20 actions run and their results, and shows them.
type Action struct {
	Concern string // the instance the action acts on, with Name; "" for none
	Name    string
	Label   string                          // the button's text; unique per instance
	Do      func(ctx context.Context) error // what the action does; required
}

// Page is a live status page of the concerns that report to it. It is a
// [middleware.Observer]: give it to each concern's Config.Observer
// (alone, or with others through [middleware.Observers]), and it keeps,
// per instance, the current state and since when, the last state
// changes, and counts of each kind of event over the last minute and
// since the instance was first seen. [Register] adds an instance's Stats
// as live gauges. It is an [http.Handler] that serves all of it as HTML
// or JSON. A Page is safe for concurrent use.
type Page struct {
	title       string
	maxInst     int
	maxTrans    int
	refresh     time.Duration
	timeline    time.Duration
	actions     []Action
	actionIndex map[actionKey]int
	cop         *http.CrossOriginProtection

	mu        sync.RWMutex
	instances map[key]*instance
	dropped   atomic.Uint64 // events and registrations refused by the cap

	logMu sync.Mutex
	log   []logEntry // the last actions run, oldest first
}

var (
	_ middleware.Observer = (*Page)(nil)
	_ http.Handler        = (*Page)(nil)
)

type key struct{ concern, name string }

type actionKey struct{ concern, name, label string }

// Limits on what a page keeps, so that its memory is bounded whatever its
// instances report.
const (
	defaultMaxInstances = 1000
	defaultTransitions  = 20
	maxTransitions      = 1000
	maxCounters         = 32  // distinct (kind, reason) pairs per instance
	maxText             = 200 // bytes kept of an error or a reason
	maxLog              = 20  // operator actions kept
)

// New returns a Page configured by cfg, or an error naming the first
// invalid field.
func New(cfg Config) (*Page, error) {
	p := &Page{
		title:     cfg.Title,
		maxInst:   cfg.MaxInstances,
		maxTrans:  cfg.Transitions,
		refresh:   cfg.Refresh,
		timeline:  cfg.Timeline,
		cop:       cfg.CrossOrigin,
		instances: make(map[key]*instance),
	}
	if p.title == "" {
		p.title = "Brace status"
	}
	switch {
	case p.maxInst < 0:
		return nil, fmt.Errorf("status: MaxInstances must not be negative, got %d", p.maxInst)
	case p.maxInst == 0:
		p.maxInst = defaultMaxInstances
	}
	switch {
	case p.maxTrans < 0 || p.maxTrans > maxTransitions:
		return nil, fmt.Errorf("status: Transitions must be between 0 and %d, got %d", maxTransitions, p.maxTrans)
	case p.maxTrans == 0:
		p.maxTrans = defaultTransitions
	}
	switch {
	case p.refresh == 0:
		p.refresh = 5 * time.Second
	case p.refresh < 0:
		p.refresh = 0
	case p.refresh < time.Second:
		p.refresh = time.Second // a meta refresh counts in whole seconds
	}
	switch {
	case p.timeline < 0:
		return nil, fmt.Errorf("status: Timeline must not be negative, got %v", p.timeline)
	case p.timeline == 0:
		p.timeline = 15 * time.Minute
	}
	if len(cfg.Actions) > 0 {
		p.actions = append([]Action(nil), cfg.Actions...)
		p.actionIndex = make(map[actionKey]int, len(p.actions))
		for i, a := range p.actions {
			if a.Label == "" {
				return nil, fmt.Errorf("status: Actions[%d].Label must not be empty", i)
			}
			if a.Do == nil {
				return nil, fmt.Errorf("status: Actions[%d].Do must not be nil", i)
			}
			k := actionKey{a.Concern, a.Name, a.Label}
			if j, dup := p.actionIndex[k]; dup {
				return nil, fmt.Errorf("status: Actions[%d] repeats Actions[%d] (%q %q %q)", i, j, a.Concern, a.Name, a.Label)
			}
			p.actionIndex[k] = i
		}
		if p.cop == nil {
			p.cop = http.NewCrossOriginProtection()
		}
	}
	return p, nil
}

// instance is what the page keeps of one (concern, name).
type instance struct {
	concern, name string

	mu         sync.Mutex
	firstSeen  time.Time
	lastEvent  time.Time
	state      string // the To of the last StateChanged; "" if none seen
	since      time.Time
	trans      []transition // ring of the last maxTrans changes
	transNext  int          // where the next change goes once trans is full
	transCount uint64       // changes seen in all
	counters   []counter
	overflow   uint64     // events whose (kind, reason) found no counter
	limit      int64      // the Limit of the last LimitChanged; 0 if none
	stats      func() any // the registered Stats source; nil if none
}

// transition is one state change as the page keeps it and shows it.
type transition struct {
	At       time.Time `json:"at"`
	From     string    `json:"from"`
	To       string    `json:"to"`
	Reason   string    `json:"reason,omitempty"`
	Failures int64     `json:"failures,omitempty"`
	Error    string    `json:"error,omitempty"`
}

// Observe records e. It is called by the concerns the page observes.
func (p *Page) Observe(_ context.Context, e middleware.Event) {
	now := time.Now()
	in := p.instance(e.Concern, e.Name, now)
	if in == nil {
		return
	}
	var t transition
	if e.Kind == middleware.StateChanged {
		t = transition{At: now, From: clip(e.From), To: clip(e.To), Reason: clip(e.Reason), Failures: e.Failures}
		if e.Err != nil {
			t.Error = clip(e.Err.Error()) // the error's code, not under the lock
		}
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	in.lastEvent = now
	switch e.Kind {
	case middleware.StateChanged:
		in.state, in.since = t.To, now
		in.transCount++
		if len(in.trans) < p.maxTrans {
			in.trans = append(in.trans, t)
		} else {
			in.trans[in.transNext] = t
			in.transNext = (in.transNext + 1) % len(in.trans)
		}
	case middleware.LimitChanged:
		in.limit = e.Limit
	}
	in.count(e.Kind, e.Reason, now)
}

// instance returns the instance of (concern, name), created if the cap
// allows, or nil.
func (p *Page) instance(concern, name string, now time.Time) *instance {
	k := key{concern, name}
	p.mu.RLock()
	in, full := p.instances[k], len(p.instances) >= p.maxInst
	p.mu.RUnlock()
	if in != nil {
		return in
	}
	if full { // without the write lock: a storm of such events stays cheap
		p.dropped.Add(1)
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if in = p.instances[k]; in != nil {
		return in
	}
	if len(p.instances) >= p.maxInst {
		p.dropped.Add(1)
		return nil
	}
	in = &instance{concern: concern, name: name, firstSeen: now}
	p.instances[k] = in
	return in
}

// Register shows the value stats returns as live gauges of the instance
// (concern, name), which it creates if no event has yet: every exported
// numeric, boolean, string or [fmt.Stringer] field of a struct, nested
// structs' fields under "Outer.Inner". Call it with the concern's Stats
// method and the names its events carry:
//
//	status.Register(page, "breaker", "payments", b.Stats)
//
// A field named State of a string or Stringer type is taken as the
// instance's current state, so that the page shows a state a concern
// computes without an event (a breaker whose open time has passed is
// half-open before any call arrives). stats is called on every view of the
// page, with no lock of the page held; it must be safe for concurrent
// use. A nil stats removes the source. Register returns an error when the
// page already holds MaxInstances other instances.
func Register[S any](p *Page, concern, name string, stats func() S) error {
	var f func() any
	if stats != nil {
		f = func() any { return stats() }
	}
	return p.register(concern, name, f)
}

func (p *Page) register(concern, name string, f func() any) error {
	in := p.instance(concern, name, time.Now())
	if in == nil {
		return fmt.Errorf("status: MaxInstances (%d) reached: %q %q not registered", p.maxInst, concern, name)
	}
	in.mu.Lock()
	in.stats = f
	in.mu.Unlock()
	return nil
}

// clip bounds a text kept from an event.
func clip(s string) string {
	if len(s) <= maxText {
		return s
	}
	i := maxText
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}
