package status

import (
	"bytes"
	"fmt"
	"html/template"
	"io"
	"time"
)

// page is the HTML page. Everything a program or a user named (concerns,
// names, states, reasons, errors, action labels) goes through
// html/template's contextual escaping. It uses no script and no asset
// from elsewhere: the timelines are inline SVG and the refresh is a meta
// element.
var page = template.Must(template.New("page").Funcs(template.FuncMap{
	"clock": clock,
	"ago":   ago,
}).Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{{if .Refresh}}<meta http-equiv="refresh" content="{{.Refresh}}">{{end}}
<title>{{.Title}}</title>
<style>
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:1em 2em;color:#222;background:#fff}
h1{font-size:1.4em;margin:.2em 0}
header p{margin:.2em 0;color:#555}
table{border-collapse:collapse;width:100%;margin-top:1em}
th,td{border-bottom:1px solid #ddd;padding:.35em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4;position:sticky;top:0}
td.name{font-weight:600;max-width:20em;overflow-wrap:break-word}
.badge{display:inline-block;padding:0 .5em;border-radius:.6em;color:#fff;font-weight:600}
.badge.ok{background:#2e7d32}.badge.bad{background:#c62828}.badge.warn{background:#b26a00}
.badge.other{background:#1565c0}.badge.none{background:#9e9e9e}
rect.ok{fill:#2e7d32}rect.bad{fill:#c62828}rect.warn{fill:#f9a825}rect.other{fill:#1565c0}
rect.bg{fill:#eee}line.mark{stroke:#000;stroke-width:1}
small,.muted{color:#666}
ol.trans{margin:0;padding-left:1.2em}
.err{color:#c62828}
.gauges{max-width:28em}.gauges span{display:inline-block;margin-right:.8em;white-space:nowrap}
.axis{display:flex;justify-content:space-between;width:300px;font-size:11px;color:#666}
#alarms{border-left:4px solid #c62828;padding:.2em .8em;background:#fff5f5}
#alarms ul{margin:.2em 0;padding-left:1.2em}
form{display:inline;margin:0}
button{margin:.1em .2em .1em 0}
</style>
</head>
<body>
<header>
<h1>{{.Title}}</h1>
<p>{{len .Instances}} instance{{if ne (len .Instances) 1}}s{{end}} · {{clock .Now}} UTC{{if .Refresh}} · refreshes every {{.Refresh}}s{{end}} · <a href="?format=json">JSON</a></p>
<p class="muted">Counts are of the events the concerns emit: refusals, retries, timeouts, state changes… A call that succeeds emits none, so success rates appear only where an instance's gauges (its Stats) count them.</p>
</header>
{{if .Alarms}}<section id="alarms"><h2>Needs attention</h2><ul>
{{range .Alarms}}<li><span class="badge {{.Class}}">{{.State}}</span> {{.Concern}} <b>{{.Name}}</b>{{if not .Since.IsZero}} since {{clock .Since}} ({{ago $.Now .Since}} ago){{end}}</li>
{{end}}</ul></section>{{end}}
{{if .Dropped}}<p class="err">{{.Dropped}} events and registrations of instances beyond the page's cap were dropped.</p>{{end}}
{{if .Actions}}<p>Actions: {{range .Actions}}<form method="post"><input type="hidden" name="concern" value=""><input type="hidden" name="name" value=""><button name="action" value="{{.}}">{{.}}</button></form>{{end}}</p>{{end}}
{{if .ActionLog}}<details open><summary>Operator actions</summary><ol>
{{range .ActionLog}}<li>{{clock .At}} {{.Label}}{{if or .Concern .Name}} on {{.Concern}} {{.Name}}{{end}}: {{with .Error}}<span class="err">failed: {{.}}</span>{{else}}done{{end}}</li>
{{end}}</ol></details>{{end}}
<table>
<thead><tr><th>Concern</th><th>Name</th><th>State</th><th>Timeline, last {{.Timeline}}</th><th>Events, last minute (total)</th><th>Gauges</th><th>Transitions, newest first</th>{{if .Editable}}<th>Actions</th>{{end}}</tr></thead>
<tbody>
{{if .Instances}}{{.Rows}}{{else}}<tr><td colspan="8" class="muted">No instance has reported yet.</td></tr>
{{end}}</tbody>
</table>
</body>
</html>
`))

// render writes v as the HTML page.
func render(w io.Writer, v *view) error {
	var rows bytes.Buffer
	rows.Grow(2048 * len(v.Instances))
	writeRows(&rows, v)
	return page.Execute(w, struct {
		*view
		Rows template.HTML // escaped by writeRows
	}{v, template.HTML(rows.String())})
}

// ago writes how long before now t was, to the second.
func ago(now, t time.Time) string {
	d := now.Sub(t).Truncate(time.Second)
	if d < 0 {
		d = 0
	}
	return d.String()
}

// num writes a gauge's value.
func num(v any) string {
	if f, ok := v.(float64); ok {
		return fmt.Sprintf("%.4g", f)
	}
	return fmt.Sprint(v)
}
