package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// output writes tables, or the API's JSON as it came when json is set.
// The first write error is kept in err.
type output struct {
	w    io.Writer
	json bool
	tw   *tabwriter.Writer
	err  error
}

// raw prints data, indented, when the output is JSON, and says whether it
// did.
func (o *output) raw(data []byte) bool {
	if !o.json {
		return false
	}
	var b bytes.Buffer
	if len(bytes.TrimSpace(data)) == 0 {
		return true
	}
	if err := json.Indent(&b, bytes.TrimSpace(data), "", "  "); err != nil {
		b.Reset()
		b.Write(data)
	}
	b.WriteByte('\n')
	o.write(b.Bytes())
	return true
}

// row adds a table row; flush aligns and writes the table.
func (o *output) row(cells ...string) {
	if o.tw == nil {
		o.tw = tabwriter.NewWriter(o.w, 0, 0, 2, ' ', 0)
	}
	for i, c := range cells {
		// A tab or newline in a cell would break the columns.
		cells[i] = strings.NewReplacer("\t", " ", "\n", " ", "\r", "").Replace(c)
	}
	if _, err := io.WriteString(o.tw, strings.Join(cells, "\t")+"\n"); err != nil && o.err == nil {
		o.err = err
	}
}

func (o *output) flush() {
	if o.tw == nil {
		return
	}
	if err := o.tw.Flush(); err != nil && o.err == nil {
		o.err = err
	}
	o.tw = nil
}

func (o *output) printf(format string, a ...any) {
	o.write(fmt.Appendf(nil, format, a...))
}

// done confirms an action that answers nothing (204), in table mode only.
func (o *output) done(format string, a ...any) {
	if !o.json {
		o.printf(format+"\n", a...)
	}
}

func (o *output) write(p []byte) {
	if _, err := o.w.Write(p); err != nil && o.err == nil {
		o.err = err
	}
}
