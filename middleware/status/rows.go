package status

import (
	"bytes"
	"strconv"
)

// htmlTransitions is how many of an instance's transitions, the newest,
// the HTML page lists (the JSON has all those kept).
const htmlTransitions = 5

// writeRows writes the table rows of v's instances. They are written by
// hand rather than by html/template, which is twenty times slower for a
// page of 1,000 instances (TestRender1000): every text from a program
// or a user goes through esc, and appears only as element text or as a
// double-quoted attribute value, the two contexts where html.EscapeString
// is the complete escaping. Numbers, times and colour classes are the
// page's own.
func writeRows(b *bytes.Buffer, v *view) {
	var buf []byte
	f := func(x float64) string { // an SVG coordinate
		buf = strconv.AppendFloat(buf[:0], x, 'f', -1, 64)
		return string(buf)
	}
	for i := range v.Instances {
		in := &v.Instances[i]
		b.WriteString(`<tr class="instance" data-concern="`)
		esc(b, in.Concern)
		b.WriteString(`" data-name="`)
		esc(b, in.Name)
		b.WriteString(`" data-state="`)
		esc(b, in.State)
		b.WriteString("\">\n<td>")
		esc(b, in.Concern)
		b.WriteString("</td>\n<td class=\"name\">")
		esc(b, in.Name)

		// State and since when.
		b.WriteString("</td>\n<td><span class=\"badge ")
		b.WriteString(in.Class)
		b.WriteString(`">`)
		if in.State != "" {
			esc(b, in.State)
		} else {
			b.WriteString("—")
		}
		b.WriteString("</span>")
		if !in.Since.IsZero() {
			b.WriteString("<br><small>since ")
			b.WriteString(clock(in.Since))
			b.WriteString("<br>(")
			b.WriteString(ago(v.Now, in.Since))
			b.WriteString(" ago)</small>")
		}

		// The timeline.
		w := strconv.Itoa(timelineWidth)
		b.WriteString("</td>\n<td><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + w + `" height="18" viewBox="0 0 ` + w +
			` 18" role="img" aria-label="states of `)
		esc(b, in.Concern)
		b.WriteByte(' ')
		esc(b, in.Name)
		b.WriteString(`"><rect class="bg" x="0" y="2" width="` + w + `" height="14"></rect>`)
		for _, s := range in.Segments {
			b.WriteString(`<rect class="` + s.Class + `" x="` + f(s.X) + `" y="2" width="` + f(s.W) + `" height="14"><title>`)
			esc(b, s.Title)
			b.WriteString("</title></rect>")
		}
		for _, m := range in.Marks {
			x := f(m.X)
			b.WriteString(`<line class="mark" x1="` + x + `" y1="0" x2="` + x + `" y2="18"><title>`)
			esc(b, m.Title)
			b.WriteString("</title></line>")
		}
		b.WriteString(`</svg><div class="axis"><span>−`)
		esc(b, v.Timeline)
		b.WriteString("</span><span>now</span></div></td>\n<td>")

		// Events of the last minute and in all.
		for _, e := range in.Events {
			b.WriteString("<div>")
			esc(b, e.Kind)
			if e.Reason != "" {
				b.WriteString(" <i>")
				esc(b, e.Reason)
				b.WriteString("</i>")
			}
			b.WriteString(": <b>" + strconv.FormatUint(e.LastMinute, 10) + "</b> (" + strconv.FormatUint(e.Total, 10) + ")</div>")
		}
		if len(in.Events) == 0 {
			b.WriteString("—")
		}
		if in.OtherEvents != 0 {
			b.WriteString(`<div class="muted">other: ` + strconv.FormatUint(in.OtherEvents, 10) + "</div>")
		}
		if in.Limit != 0 {
			b.WriteString("<div>limit <b>" + strconv.FormatInt(in.Limit, 10) + "</b></div>")
		}

		// Gauges.
		b.WriteString("</td>\n<td class=\"gauges\">")
		for _, g := range in.Stats {
			b.WriteString("<span>")
			esc(b, g.Name)
			b.WriteString(" <b>")
			esc(b, num(g.Value))
			b.WriteString("</b></span> ")
		}
		if in.StatsError != "" {
			b.WriteString(`<div class="err">`)
			esc(b, in.StatsError)
			b.WriteString("</div>")
		} else if len(in.Stats) == 0 {
			b.WriteString("—")
		}

		// Transitions, newest first.
		b.WriteString("</td>\n<td>")
		if len(in.Transitions) == 0 {
			b.WriteString("—")
		} else {
			b.WriteString(`<ol class="trans">`)
			for j, t := range in.Transitions {
				if j == htmlTransitions {
					break
				}
				b.WriteString(`<li class="transition">` + clock(t.At) + " ")
				esc(b, t.From)
				b.WriteString(" → ")
				esc(b, t.To)
				if t.Reason != "" {
					b.WriteString(" · ")
					esc(b, t.Reason)
				}
				if t.Failures != 0 {
					b.WriteString(" · failures " + strconv.FormatInt(t.Failures, 10))
				}
				if t.Error != "" {
					b.WriteString(` · <span class="err">`)
					esc(b, t.Error)
					b.WriteString("</span>")
				}
				b.WriteString("</li>")
			}
			b.WriteString("</ol>")
			if in.TransitionsTotal > uint64(min(len(in.Transitions), htmlTransitions)) {
				b.WriteString("<small>" + strconv.FormatUint(in.TransitionsTotal, 10) + " in all</small>")
			}
		}
		b.WriteString("</td>\n")

		// Actions.
		if v.Editable {
			b.WriteString("<td>")
			for _, a := range in.Actions {
				b.WriteString(`<form method="post"><input type="hidden" name="concern" value="`)
				esc(b, in.Concern)
				b.WriteString(`"><input type="hidden" name="name" value="`)
				esc(b, in.Name)
				b.WriteString(`"><button name="action" value="`)
				esc(b, a)
				b.WriteString(`">`)
				esc(b, a)
				b.WriteString("</button></form>")
			}
			b.WriteString("</td>\n")
		}
		b.WriteString("</tr>\n")
	}
}

// esc writes s escaped for HTML text and double-quoted attribute values,
// as html/template does: <, >, &, ' and " become character references and
// NUL becomes U+FFFD.
func esc(b *bytes.Buffer, s string) {
	last := 0
	for i := 0; i < len(s); i++ {
		var r string
		switch s[i] {
		case '<':
			r = "&lt;"
		case '>':
			r = "&gt;"
		case '&':
			r = "&amp;"
		case '\'':
			r = "&#39;"
		case '"':
			r = "&#34;"
		case 0:
			r = "\uFFFD"
		default:
			continue
		}
		b.WriteString(s[last:i])
		b.WriteString(r)
		last = i + 1
	}
	b.WriteString(s[last:])
}
