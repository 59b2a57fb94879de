package main

import (
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"
)

// recordFormat is a compiled kcat-style --format string: literal bytes and
// %-directives, applied to each consumed record.
//
//	%t topic        %p partition      %o offset       %T timestamp (ms)
//	%k key          %v, %s value      %K key length   %S value length (-1 for null)
//	%h headers as k=v,k=v             %% a percent sign
//	\n \r \t \\ and \xHH escapes
type recordFormat []formatPart

// formatPart is either literal text (verb == 0) or one directive.
type formatPart struct {
	lit  []byte
	verb byte
}

// compileFormat parses a --format string; unknown directives and escapes
// are errors naming their position, so a typo never prints silently wrong
// output.
func compileFormat(s string) (recordFormat, error) {
	var (
		f   recordFormat
		lit []byte
	)
	flush := func() {
		if len(lit) > 0 {
			f = append(f, formatPart{lit: lit})
			lit = nil
		}
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '%':
			if i+1 >= len(s) {
				return nil, fmt.Errorf("--format: lone %% at the end (write %%%% for a percent sign)")
			}
			i++
			switch v := s[i]; v {
			case '%':
				lit = append(lit, '%')
			case 't', 'p', 'o', 'T', 'k', 'v', 's', 'K', 'S', 'h':
				flush()
				f = append(f, formatPart{verb: v})
			default:
				return nil, fmt.Errorf("--format: unknown directive %%%c at byte %d (known: %%t %%p %%o %%T %%k %%v %%s %%K %%S %%h %%%%)", v, i-1)
			}
		case '\\':
			if i+1 >= len(s) {
				return nil, fmt.Errorf("--format: lone \\ at the end (write \\\\ for a backslash)")
			}
			i++
			switch e := s[i]; e {
			case 'n':
				lit = append(lit, '\n')
			case 'r':
				lit = append(lit, '\r')
			case 't':
				lit = append(lit, '\t')
			case '\\':
				lit = append(lit, '\\')
			case 'x':
				if i+2 >= len(s) {
					return nil, fmt.Errorf("--format: \\x at byte %d needs two hex digits", i-1)
				}
				b, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
				if err != nil {
					return nil, fmt.Errorf("--format: \\x%s at byte %d is not two hex digits", s[i+1:i+3], i-1)
				}
				lit = append(lit, byte(b))
				i += 2
			default:
				return nil, fmt.Errorf("--format: unknown escape \\%c at byte %d (known: \\n \\r \\t \\\\ \\xHH)", e, i-1)
			}
		default:
			lit = append(lit, c)
		}
	}
	flush()
	return f, nil
}

// appendRecord appends r formatted by f to dst.
func (f recordFormat) appendRecord(dst []byte, r *kgo.Record) []byte {
	for _, p := range f {
		switch p.verb {
		case 0:
			dst = append(dst, p.lit...)
		case 't':
			dst = append(dst, r.Topic...)
		case 'p':
			dst = strconv.AppendInt(dst, int64(r.Partition), 10)
		case 'o':
			dst = strconv.AppendInt(dst, r.Offset, 10)
		case 'T':
			dst = strconv.AppendInt(dst, r.Timestamp.UnixMilli(), 10)
		case 'k':
			dst = append(dst, r.Key...)
		case 'v', 's':
			dst = append(dst, r.Value...)
		case 'K':
			dst = strconv.AppendInt(dst, nullableLen(r.Key), 10)
		case 'S':
			dst = strconv.AppendInt(dst, nullableLen(r.Value), 10)
		case 'h':
			for i, h := range r.Headers {
				if i > 0 {
					dst = append(dst, ',')
				}
				dst = append(dst, h.Key...)
				dst = append(dst, '=')
				dst = append(dst, h.Value...)
			}
		}
	}
	return dst
}

// nullableLen is the length Kafka tools print: -1 for a null key or value.
func nullableLen(b []byte) int64 {
	if b == nil {
		return -1
	}
	return int64(len(b))
}
