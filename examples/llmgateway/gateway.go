package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/httpx"
	"github.com/brace-go/brace/middleware/priority"
)

// providerError is a provider's refusal: a 429 or a 503, with its
// Retry-After. Its methods are the contracts the concerns read without
// importing this program: Retryable (retry retries it; the throttler counts
// it as not accepted) and RetryAfter (retry's floor on the next delay).
type providerError struct {
	Provider string
	Status   int
	Type     string // "rate_limit_exceeded", "overloaded", "unavailable"
	Delay    time.Duration
}

func (e *providerError) Error() string {
	return fmt.Sprintf("%s: %d %s (retry after %v)", e.Provider, e.Status, e.Type, e.Delay)
}

func (e *providerError) Retryable() bool           { return true }
func (e *providerError) RetryAfter() time.Duration { return e.Delay }

// client calls the simulated providers over loopback HTTP.
type client struct {
	http      *http.Client
	providers map[string]*provider
}

func newClient(providers map[string]*provider) *client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256 // keep loopback connections; no TIME_WAIT storm
	return &client{http: &http.Client{Transport: tr}, providers: providers}
}

func (c *client) close() { c.http.CloseIdleConnections() }

// complete is the unprotected call: one POST to the prompt's provider. A
// 429 or 503 is a *providerError; the response's usage is the real cost.
func (c *client) complete(ctx context.Context, p prompt) (completion, error) {
	body, err := json.Marshal(completionRequest{Prompt: p.Text, MaxTokens: p.MaxTokens})
	if err != nil {
		return completion{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.providers[p.Provider].srv.URL+"/v1/completions", bytes.NewReader(body))
	if err != nil {
		return completion{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	if l := priority.From(ctx); l != priority.Default {
		req.Header.Set(priority.Header, l.String()) // the provider may use it (this one does not)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return completion{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e errorResponse
		json.NewDecoder(io.LimitReader(resp.Body, 4<<10)).Decode(&e)
		// The later of Retry-After and the reset of an exhausted
		// RateLimit policy: the provider sends both, and either may be
		// missing from another provider.
		delay, _ := httpx.ParseRetryAfter(resp.Header, time.Now())
		if reset, ok := httpx.ParseRateLimit(resp.Header); ok {
			delay = max(delay, reset)
		}
		return completion{}, &providerError{Provider: p.Provider, Status: resp.StatusCode, Type: e.Error.Type, Delay: delay}
	}
	var out completionResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return completion{}, fmt.Errorf("%s: %w", p.Provider, err)
	}
	return completion{Provider: p.Provider, Text: out.Text, Usage: out.Usage}, nil
}

// tally is a middleware.Observer that counts every concern's events by
// concern, instance name, kind, reason and priority: the tables the program
// prints, beside each concern's Stats.
type tally struct {
	mu   sync.Mutex
	n    map[tallyKey]int
	maxP map[tallyKey]float64 // the highest Probability, by concern and name
}

type tallyKey struct {
	concern, name string
	kind          middleware.Kind
	reason        string
	level         priority.Level
}

func (t *tally) Observe(_ context.Context, e middleware.Event) {
	k := tallyKey{e.Concern, e.Name, e.Kind, e.Reason, e.Priority}
	t.mu.Lock()
	if t.n == nil {
		t.n = map[tallyKey]int{}
	}
	t.n[k]++
	if e.Probability > 0 {
		if t.maxP == nil {
			t.maxP = map[tallyKey]float64{}
		}
		pk := tallyKey{concern: e.Concern, name: e.Name}
		t.maxP[pk] = max(t.maxP[pk], e.Probability)
	}
	t.mu.Unlock()
}

// count adds up the events that match.
func (t *tally) count(match func(tallyKey) bool) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	total := 0
	for k, n := range t.n {
		if match(k) {
			total += n
		}
	}
	return total
}

// maxProbability is the highest rejection probability an event of the
// instance reported.
func (t *tally) maxProbability(concern, name string) float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.maxP[tallyKey{concern: concern, name: name}]
}

// isProvider reports whether err is a provider's refusal with this status.
func isProvider(err error, status int) bool {
	var pe *providerError
	return errors.As(err, &pe) && pe.Status == status
}
