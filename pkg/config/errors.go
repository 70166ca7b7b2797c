package config

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Pos is a position in a configuration file: 1-based line and column.
type Pos struct {
	Line   int
	Column int
}

// Error is one configuration problem, located in its file.
type Error struct {
	File string
	Pos  Pos
	Msg  string
}

// Error formats the problem as file:line:column: message, the form editors jump to.
func (e *Error) Error() string {
	switch {
	case e.Pos.Line > 0 && e.Pos.Column > 0:
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Pos.Line, e.Pos.Column, e.Msg)
	case e.Pos.Line > 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Pos.Line, e.Msg)
	default:
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
}

// ErrorList is every problem found in one configuration; loading reports them
// all at once rather than stopping at the first.
type ErrorList []*Error

// Error joins the problems, one per line, in file order.
func (l ErrorList) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap exposes each problem to errors.As.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// errorSink collects problems while a configuration is decoded and compiled.
type errorSink struct {
	file string
	errs ErrorList
}

func (s *errorSink) add(pos Pos, format string, args ...any) {
	s.errs = append(s.errs, &Error{File: s.file, Pos: pos, Msg: fmt.Sprintf(format, args...)})
}

// err returns the collected problems sorted by position, or nil.
func (s *errorSink) err() error {
	if len(s.errs) == 0 {
		return nil
	}
	sort.SliceStable(s.errs, func(i, j int) bool {
		a, b := s.errs[i].Pos, s.errs[j].Pos
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
	return s.errs
}

// Append adds err to the list: the errors of an ErrorList, one *Error as it
// is, anything else located at file:pos. A nil err adds nothing.
func (l *ErrorList) Append(file string, pos Pos, err error) {
	var list ErrorList
	var one *Error
	switch {
	case err == nil:
	case errors.As(err, &list):
		*l = append(*l, list...)
	case errors.As(err, &one):
		*l = append(*l, one)
	default:
		*l = append(*l, &Error{File: file, Pos: pos, Msg: err.Error()})
	}
}

// Err returns the list as an error, or nil when it is empty.
func (l ErrorList) Err() error {
	if len(l) == 0 {
		return nil
	}
	return l
}
