package status

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ServeHTTP serves the page. A GET or HEAD gets the HTML page, or, with
// the query parameter format=json or an Accept header that asks for
// application/json and not text/html, the same data as JSON. A POST runs
// one of Config.Actions; a page without actions refuses it with 405 Method
// Not Allowed, and a POST that fails the cross-origin check gets 403
// Forbidden. Every response says not to cache it, and the HTML page's
// Content-Security-Policy allows no script, no asset from elsewhere and
// no framing.
func (p *Page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		p.get(w, r)
	case http.MethodPost:
		p.post(w, r)
	default:
		p.notAllowed(w)
	}
}

func (p *Page) notAllowed(w http.ResponseWriter) {
	if len(p.actions) > 0 {
		w.Header().Set("Allow", "GET, HEAD, POST")
	} else {
		w.Header().Set("Allow", "GET, HEAD")
	}
	http.Error(w, "status: method not allowed", http.StatusMethodNotAllowed)
}

// wantsJSON reports whether r asks for JSON.
func wantsJSON(r *http.Request) bool {
	if f := r.URL.Query().Get("format"); f != "" {
		return f == "json"
	}
	a := r.Header.Get("Accept")
	return strings.Contains(a, "application/json") && !strings.Contains(a, "text/html")
}

func (p *Page) get(w http.ResponseWriter, r *http.Request) {
	v := p.snapshot(time.Now())
	var b bytes.Buffer
	if wantsJSON(r) {
		if err := json.NewEncoder(&b).Encode(v); err != nil {
			http.Error(w, "status: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
	} else {
		if err := render(&b, v); err != nil {
			http.Error(w, "status: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy",
			"default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	}
	w.Header().Set("Content-Length", fmt.Sprint(b.Len()))
	if r.Method != http.MethodHead {
		w.Write(b.Bytes())
	}
}

// post runs the action the form names, if the page has it and the
// request passes the cross-origin check, records it, and sends a browser
// back to the page (303 See Other) or a script its result as JSON.
func (p *Page) post(w http.ResponseWriter, r *http.Request) {
	if len(p.actions) == 0 {
		p.notAllowed(w)
		return
	}
	if err := p.cop.Check(r); err != nil {
		http.Error(w, "status: "+err.Error(), http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "status: "+err.Error(), http.StatusBadRequest)
		return
	}
	k := actionKey{r.PostForm.Get("concern"), r.PostForm.Get("name"), r.PostForm.Get("action")}
	i, ok := p.actionIndex[k]
	if !ok {
		http.Error(w, fmt.Sprintf("status: no action %q on %q %q", k.label, k.concern, k.name), http.StatusNotFound)
		return
	}
	err := run(r, p.actions[i])
	e := logEntry{At: time.Now(), Concern: k.concern, Name: k.name, Label: k.label}
	if err != nil {
		e.Error = clip(err.Error())
	}
	p.logMu.Lock()
	if len(p.log) == maxLog {
		p.log = append(p.log[:0], p.log[1:]...)
	}
	p.log = append(p.log, e)
	p.logMu.Unlock()

	if wantsJSON(r) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		if err != nil {
			w.WriteHeader(http.StatusInternalServerError)
		}
		json.NewEncoder(w).Encode(e)
		return
	}
	// Back to the page, by a reference relative to it, so that it works
	// under a prefix that http.StripPrefix removed.
	w.Header().Set("Location", back(r.URL))
	w.WriteHeader(http.StatusSeeOther)
}

// back returns the reference, relative to the page at u, that leads back
// to it: "./brace" for /debug/brace, "./" for /debug/brace/, with u's
// query. The "./" keeps a segment such as "a:b" from reading as a scheme.
func back(u *url.URL) string {
	p := u.EscapedPath()
	ref := "./" + p[strings.LastIndexByte(p, '/')+1:]
	if u.RawQuery != "" {
		ref += "?" + u.RawQuery
	}
	return ref
}

// run runs a's Do with r's context; a panic in it is returned as an
// error, so that it is recorded like a failure.
func run(r *http.Request, a Action) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("status: action %q panicked: %v", a.Label, v)
		}
	}()
	return a.Do(r.Context())
}
