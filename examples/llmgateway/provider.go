package main

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"time"
)

// minute is a provider's "minute" on the compressed time scale of this
// program: its requests-per-minute and tokens-per-minute limits are counted
// over fixed windows of this length, and a Retry-After of 1 (second, the
// smallest an HTTP Retry-After can say) means "when the window turns".
const minute = time.Second

// limits are what one provider allows.
type limits struct {
	RPM      int // requests admitted per window
	TPM      int // tokens (prompt + completion) admitted per window
	InFlight int // requests served at once; beyond it, 503 "overloaded"
}

// period is a stretch of the run, from the provider's start, during which it
// misbehaves.
type period struct{ from, to time.Duration }

func (p period) has(d time.Duration) bool { return d >= p.from && d < p.to }

func (p period) String() string {
	return fmt.Sprintf("%.1fs–%.1fs", p.from.Seconds(), p.to.Seconds())
}

// providerSpec describes one simulated provider.
type providerSpec struct {
	name    string
	limits  limits
	latency time.Duration // base latency; +perToken for each completion token
	failing period        // every request gets 503 "unavailable"
	// overloaded: latency ×slowFactor, and three requests in four get
	// 503 "overloaded" at once (a brownout: it answers a quarter)
	overloaded period
}

const (
	perToken   = 20 * time.Microsecond
	slowFactor = 5
)

// completionRequest is what the gateway sends to a provider.
type completionRequest struct {
	Prompt    string `json:"prompt"`
	MaxTokens int    `json:"max_tokens"`
}

// usage is the token count a provider reports (and bills).
type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
}

func (u usage) total() int { return u.PromptTokens + u.CompletionTokens }

type completionResponse struct {
	Text  string `json:"text"`
	Usage usage  `json:"usage"`
}

type errorResponse struct {
	Error struct {
		Type string `json:"type"`
	} `json:"error"`
}

// countTokens is the simulated tokenizer: one token per 4 bytes, rounded
// up. The gateway estimates a prompt's cost with the same rule; only the
// completion's length is unknown before the call.
func countTokens(s string) int { return (len(s) + 3) / 4 }

// completionTokens is how many tokens the provider generates for a prompt:
// a fixed share of max_tokens picked by the prompt's hash, so identical
// prompts get identical completions.
func completionTokens(prompt string, maxTokens int) int {
	h := fnv.New32a()
	h.Write([]byte(prompt))
	return maxTokens/3 + int(h.Sum32()%uint32(maxTokens-maxTokens/3+1))
}

// providerCounts is what a provider saw and did.
type providerCounts struct {
	Requests      int // every request received
	OK            int
	RateLimited   int // 429: requests or tokens per minute exhausted
	Overloaded    int // 503: more than InFlight at once
	Brownout      int // 503: refused in the overloaded period
	Failing       int // 503: inside the failing period
	Tokens        int // tokens billed (prompt + completion of answered requests)
	PeakInFlight  int
	MaxWindowReqs int // most requests admitted in one window
	MaxWindowToks int // most tokens admitted in one window

	// Timeline counts the requests received, and those refused, in each
	// slot of the run (half a minute).
	Timeline []slotCounts
}

// slot is the width of a timeline slot.
const slot = minute / 2

type slotCounts struct{ Requests, Refused int }

// provider is a simulated LLM provider behind an httptest.Server.
type provider struct {
	spec  providerSpec
	srv   *httptest.Server
	start time.Time

	mu       sync.Mutex
	window   int64 // index of the current window
	reqs     int   // admitted in the current window
	toks     int   // tokens charged in the current window
	inFlight int
	browned  int // requests received during the overloaded period
	counts   providerCounts
}

func newProvider(spec providerSpec) *provider {
	p := &provider{spec: spec, start: time.Now()}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	return p
}

func (p *provider) close() { p.srv.Close() }

func (p *provider) stats() providerCounts {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.counts
	c.Timeline = slices.Clone(c.Timeline)
	return c
}

// serve answers POST /v1/completions. Admission is decided under one lock:
// the failing period first, then the concurrency limit, then the requests
// and tokens of the current window. An admitted request is charged its prompt
// and completion tokens at once (the provider knows how long its answer will
// be), so no window is ever over its limits.
func (p *provider) serve(w http.ResponseWriter, r *http.Request) {
	var req completionRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.MaxTokens < 1 {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	u := usage{PromptTokens: countTokens(req.Prompt), CompletionTokens: completionTokens(req.Prompt, req.MaxTokens)}
	since := time.Since(p.start)
	lim := p.spec.limits

	p.mu.Lock()
	p.counts.Requests++
	i := int(since / slot)
	for len(p.counts.Timeline) <= i {
		p.counts.Timeline = append(p.counts.Timeline, slotCounts{})
	}
	p.counts.Timeline[i].Requests++
	if win := int64(since / minute); win != p.window {
		p.window, p.reqs, p.toks = win, 0, 0
	}
	resetIn := minute - since%minute
	refuse := func(status int, kind string, counter *int, exhausted string) {
		*counter++
		p.counts.Timeline[i].Refused++
		remReqs, remToks := lim.RPM-p.reqs, lim.TPM-p.toks
		p.mu.Unlock()
		h := w.Header()
		p.rateLimitHeaders(h, remReqs, remToks, resetIn, exhausted)
		h.Set("Retry-After", strconv.Itoa(seconds(resetIn)))
		h.Set("Content-Type", "application/json")
		w.WriteHeader(status)
		var e errorResponse
		e.Error.Type = kind
		json.NewEncoder(w).Encode(e)
	}
	switch {
	case p.spec.failing.has(since):
		refuse(http.StatusServiceUnavailable, "unavailable", &p.counts.Failing, "")
		return
	case p.inFlight >= lim.InFlight:
		refuse(http.StatusServiceUnavailable, "overloaded", &p.counts.Overloaded, "")
		return
	case p.spec.overloaded.has(since) && p.brownout():
		refuse(http.StatusServiceUnavailable, "overloaded", &p.counts.Brownout, "")
		return
	case p.reqs+1 > lim.RPM:
		refuse(http.StatusTooManyRequests, "rate_limit_exceeded", &p.counts.RateLimited, "rpm")
		return
	case p.toks+u.total() > lim.TPM:
		refuse(http.StatusTooManyRequests, "rate_limit_exceeded", &p.counts.RateLimited, "tpm")
		return
	}
	p.reqs++
	p.toks += u.total()
	p.inFlight++
	p.counts.PeakInFlight = max(p.counts.PeakInFlight, p.inFlight)
	p.counts.MaxWindowReqs = max(p.counts.MaxWindowReqs, p.reqs)
	p.counts.MaxWindowToks = max(p.counts.MaxWindowToks, p.toks)
	remReqs, remToks := lim.RPM-p.reqs, lim.TPM-p.toks
	p.mu.Unlock()

	latency := p.spec.latency + time.Duration(u.CompletionTokens)*perToken
	if p.spec.overloaded.has(since) {
		latency *= slowFactor
	}
	t := time.NewTimer(latency)
	select {
	case <-t.C:
	case <-r.Context().Done(): // the client left; the tokens stay billed
		t.Stop()
	}

	p.mu.Lock()
	p.inFlight--
	p.counts.OK++
	p.counts.Tokens += u.total()
	p.mu.Unlock()
	p.rateLimitHeaders(w.Header(), remReqs, remToks, resetIn, "")
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(completionResponse{Text: fmt.Sprintf("(%d tokens of %s)", u.CompletionTokens, p.spec.name), Usage: u})
}

// brownout reports whether to refuse this request of the overloaded period:
// three in four. Called with p.mu held.
func (p *provider) brownout() bool {
	p.browned++
	return p.browned%4 != 0
}

// rateLimitHeaders writes the provider's quota in the IETF form
// (draft-ietf-httpapi-ratelimit-headers, as httpx.SetRateLimitFields writes
// it): the policies, and in RateLimit the policy that refused the request
// (exhausted: "rpm" or "tpm") with nothing remaining for it, or else the
// tighter policy with what remains of it until the window turns.
func (p *provider) rateLimitHeaders(h http.Header, remReqs, remToks int, resetIn time.Duration, exhausted string) {
	lim := p.spec.limits
	w := seconds(minute)
	h.Set("RateLimit-Policy", fmt.Sprintf(`"rpm";q=%d;w=%d, "tpm";q=%d;w=%d`, lim.RPM, w, lim.TPM, w))
	name, rem := "rpm", remReqs
	switch {
	case exhausted != "":
		name, rem = exhausted, 0
	case float64(remToks)/float64(lim.TPM) < float64(remReqs)/float64(lim.RPM):
		name, rem = "tpm", remToks
	}
	h.Set("RateLimit", fmt.Sprintf(`"%s";r=%d;t=%d`, name, max(rem, 0), seconds(resetIn)))
}

// seconds rounds d up to whole seconds, at least 1, as Retry-After needs.
func seconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}
