package main

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// summary is the table the demo prints: the callers' outcomes, the
// attempts, and what each concern counted, with the checks that tie them
// together.
type summary struct {
	sections []section
}

type section struct {
	title    string
	columns  []string // headers of the number columns
	rows     []row
	hideZero bool // leave out rows whose numbers are all zero and unchecked
}

type row struct {
	name  string
	vals  []int64
	check *check // nil: the row is not checked
}

// check is one reconciliation: the row's first value must equal want,
// which is what the rest of the table says it should be.
type check struct {
	want int64
	what string // how want is made, in words
}

func (c *check) ok(got int64) bool { return c == nil || c.want == got }

func summarize(t *tally, g *guard, svc *downstream) *summary {
	var calls [nOutcomes][2]int64
	var ran, shared int64
	for o := range nOutcomes {
		calls[o][0], calls[o][1] = t.calls[o][0].Load(), t.calls[o][1].Load()
		ran += calls[o][0]
		shared += calls[o][1]
	}
	var attempts [nAttempts]int64
	var nAttempt int64
	for a := range nAttempts {
		attempts[a] = g.attempts[a].Load()
		nAttempt += attempts[a]
	}
	gaveUp := calls[gaveUp503][0] + calls[gaveUpTimeout][0] + calls[gaveUpPanic][0] +
		calls[gaveUpOther][0] + calls[gaveUpBudget][0] + calls[gaveUpElse][0]
	unexplained := calls[gaveUpOther][0] + calls[gaveUpOther][1] + calls[gaveUpElse][0] +
		calls[gaveUpElse][1] + calls[other][0] + calls[other][1] + attempts[attemptOther]
	reached, panics := svc.Counts()

	ds, rs, bs := g.dedup.Stats(), g.retry.Stats(), g.budget.Stats()
	brs, ps, ts := g.breaker.Stats(), g.backpressure.Stats(), g.timeout.Stats()

	s := new(summary)
	c := section{title: "calls, as the callers saw them", columns: []string{"calls", "ran", "shared"}, hideZero: true}
	for o := range nOutcomes {
		c.rows = append(c.rows, row{name: outcomeNames[o], vals: []int64{calls[o][0] + calls[o][1], calls[o][0], calls[o][1]}})
	}
	c.rows = append(c.rows, row{name: "total", vals: []int64{ran + shared, ran, shared}})
	s.sections = append(s.sections, c)

	a := section{title: "attempts of the calls that ran, as the retry saw them", columns: []string{"attempts"}, hideZero: true}
	for i := range nAttempts {
		a.rows = append(a.rows, row{name: attemptNames[i], vals: []int64{attempts[i]}})
	}
	a.rows = append(a.rows, row{name: "total", vals: []int64{nAttempt}})
	s.sections = append(s.sections, a)

	u := func(v uint64) []int64 { return []int64{int64(v)} }
	n := func(v int64) []int64 { return []int64{v} }
	k := section{title: "what each concern counted (Stats), and what it must equal", columns: []string{"count"}}
	k.rows = []row{
		{"dedup: calls given a shared result", u(ds.Joined + ds.CacheHits), &check{shared, "shared calls"}},
		{"  of which from its cache", u(ds.CacheHits), nil},
		{"retry: retries", u(rs.Retries), &check{nAttempt - ran, "attempts − calls that ran"}},
		{"retry: gave up", u(rs.GaveUp), &check{gaveUp + t.rejectedAfterRetry.Load(),
			"calls that gave up + calls rejected after a retry"}},
		{"budget: retries refused", u(bs.Rejected), &check{calls[gaveUpBudget][0], "calls that ran and found the budget empty"}},
		{"breaker: calls rejected", u(brs.Rejected), &check{attempts[attemptOpen], "attempts rejected by the breaker"}},
		{"  the same, as callers saw it", n(calls[open][0]), &check{attempts[attemptOpen], "(a rejection ends the call)"}},
		{"breaker: opened", n(g.events.opened.Load()), nil},
		{"breaker: closed again", n(g.events.closed.Load()), nil},
		{"breaker: state changes", u(brs.Transitions), nil},
		{"backpressure: calls shed", u(ps.Rejected), &check{attempts[attemptShed], "attempts shed"}},
		{"  the same, as callers saw it", n(calls[shed][0]), &check{attempts[attemptShed], "(a rejection ends the call)"}},
		{"backpressure: soft limit reached", n(g.events.softLimit.Load()), nil},
		{"timeout: attempts cut off", u(ts.TimedOut), &check{attempts[attemptTimedOut] + g.events.lateSuccesses.Load(),
			"timed-out attempts + late successes (Observer)"}},
		{"failures no concern explains", n(unexplained), &check{0, "none"}},
	}
	s.sections = append(s.sections, k)

	d := section{title: "the downstream", columns: []string{"calls"}}
	d.rows = []row{
		{"calls that reached it", n(int64(reached)), &check{nAttempt - attempts[attemptOpen] - attempts[attemptShed],
			"attempts − rejected − shed"}},
		{"panics (recovered, retried)", n(int64(panics)), nil},
	}
	s.sections = append(s.sections, d)
	return s
}

// mismatches returns the number of checks that failed.
func (s *summary) mismatches() int {
	n := 0
	for _, sec := range s.sections {
		for _, r := range sec.rows {
			if !r.check.ok(r.vals[0]) {
				n++
			}
		}
	}
	return n
}

func (s *summary) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for i, sec := range s.sections {
		if i > 0 {
			fmt.Fprintln(tw)
		}
		fmt.Fprintf(tw, "%s", sec.title)
		for _, c := range sec.columns {
			fmt.Fprintf(tw, "\t%8s", c)
		}
		fmt.Fprintln(tw)
		for _, r := range sec.rows {
			if sec.hideZero && r.check == nil && allZero(r.vals) {
				continue
			}
			fmt.Fprintf(tw, "  %s", r.name)
			for _, v := range r.vals {
				fmt.Fprintf(tw, "\t%8d", v)
			}
			switch {
			case r.check == nil:
			case r.check.ok(r.vals[0]):
				fmt.Fprintf(tw, "\t✓ = %s", r.check.what)
			default:
				fmt.Fprintf(tw, "\t✗ want %d = %s", r.check.want, r.check.what)
			}
			fmt.Fprintln(tw)
		}
	}
	tw.Flush()
}

func allZero(vals []int64) bool {
	for _, v := range vals {
		if v != 0 {
			return false
		}
	}
	return true
}
