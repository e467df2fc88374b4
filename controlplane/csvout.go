package controlplane

import (
	"encoding/csv"
	"io"
	"regexp"
	"strings"
)

// CSVWriter is the one writer of every CSV citybridge hands out (the
// bridge registry, attendance, the audit log, events, readiness reports):
// encoding/csv with each cell neutralised against formula injection. A
// spreadsheet runs a cell that starts with = + - @ (and, in some, a tab or
// a carriage return before them) as a formula; anybody who can put text in
// a name, a contact or a failed login's name could otherwise make it
// fetch a URL or run a command on the administrator's machine.
//
// As OWASP recommends, such a cell gets a single quote in front ('=1+1),
// which spreadsheets read as "this is text". Precisely: a cell that, after
// any single quotes it starts with, begins with one of = + - @ tab CR gets
// one more quote in front, unless it is a plain decimal number (-3, +84,
// -12.5: a number is never a formula, and the figures stay numbers).
// RestoreCSVCell takes exactly that quote off again, so an export read
// back by the registry import gives the original values, including ones
// that themselves start with a quote.
type CSVWriter struct{ w *csv.Writer }

// NewCSVWriter returns a CSVWriter writing to w.
func NewCSVWriter(w io.Writer) *CSVWriter { return &CSVWriter{w: csv.NewWriter(w)} }

// Write writes one record, its cells neutralised.
func (c *CSVWriter) Write(record []string) error {
	out := make([]string, len(record))
	for i, cell := range record {
		out[i] = NeutraliseCSVCell(cell)
	}
	return c.w.Write(out)
}

// WriteAll writes the records and flushes.
func (c *CSVWriter) WriteAll(records [][]string) error {
	for _, r := range records {
		if err := c.Write(r); err != nil {
			return err
		}
	}
	c.w.Flush()
	return c.w.Error()
}

// Flush writes any buffered data out.
func (c *CSVWriter) Flush() { c.w.Flush() }

// Error reports any error of a previous Write or Flush.
func (c *CSVWriter) Error() error { return c.w.Error() }

// plainNumber is a decimal number with an optional sign: a spreadsheet
// reads it as that number, never as a formula.
var plainNumber = regexp.MustCompile(`^[+-]?[0-9]+(\.[0-9]+)?$`)

// formulaStart reports whether a spreadsheet could take s for a formula.
func formulaStart(s string) bool {
	return s != "" && strings.IndexByte("=+-@\t\r", s[0]) >= 0 && !plainNumber.MatchString(s)
}

// NeutraliseCSVCell returns the cell as CSVWriter writes it.
func NeutraliseCSVCell(s string) string {
	if formulaStart(strings.TrimLeft(s, "'")) {
		return "'" + s
	}
	return s
}

// RestoreCSVCell undoes NeutraliseCSVCell: RestoreCSVCell(
// NeutraliseCSVCell(s)) == s for every s. A cell a person wrote as
// '=text or '+84 (a spreadsheet's way of saying "text") is read as =text
// and +84 too.
func RestoreCSVCell(s string) string {
	if strings.HasPrefix(s, "'") && formulaStart(strings.TrimLeft(s, "'")) {
		return s[1:]
	}
	return s
}
