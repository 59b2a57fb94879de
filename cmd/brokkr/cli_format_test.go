package main

import (
	"bufio"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func testRecord() *kgo.Record {
	return &kgo.Record{
		Topic: "orders", Partition: 3, Offset: 42,
		Timestamp: time.UnixMilli(1700000000123),
		Key:       []byte("k1"), Value: []byte("hello"),
		Headers: []kgo.RecordHeader{{Key: "a", Value: []byte("1")}, {Key: "b", Value: []byte("x=y")}},
	}
}

func TestFormatDirectives(t *testing.T) {
	nullKey := testRecord()
	nullKey.Key, nullKey.Value, nullKey.Headers = nil, []byte{}, nil
	for _, tc := range []struct {
		format string
		rec    *kgo.Record
		want   string
	}{
		{`%v\n`, testRecord(), "hello\n"},
		{`%t %p %o %T %k %v %s %K %S %h %%`, testRecord(), "orders 3 42 1700000000123 k1 hello hello 2 5 a=1,b=x=y %"},
		{`[%k][%v] %K %S [%h]`, nullKey, "[][] -1 0 []"},
		{`\t\r\\\x41\x7e`, testRecord(), "\t\r\\A~"},
		{`plain text`, testRecord(), "plain text"},
		{``, testRecord(), ""},
	} {
		f, err := compileFormat(tc.format)
		if err != nil {
			t.Fatalf("%q: %v", tc.format, err)
		}
		if got := string(f.appendRecord(nil, tc.rec)); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.format, got, tc.want)
		}
	}
}

func TestFormatErrors(t *testing.T) {
	for format, want := range map[string]string{
		`%`:       "lone %",
		`%x`:      "unknown directive %x at byte 0",
		`ab%Z`:    "unknown directive %Z at byte 2",
		`\`:       `lone \`,
		`\q`:      `unknown escape \q at byte 0`,
		`\x4`:     `needs two hex digits`,
		`\xzz`:    `is not two hex digits`,
		`%v\x4g!`: `is not two hex digits`,
	} {
		_, err := compileFormat(format)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want an error containing %q", format, err, want)
		}
	}
}

func TestParseOffsetSpec(t *testing.T) {
	for in, want := range map[string]offsetSpec{
		"start":                   {kind: offStart},
		"oldest":                  {kind: offStart},
		"end":                     {kind: offEnd},
		"17":                      {kind: offExact, n: 17},
		"-5":                      {kind: offBack, n: 5},
		"@1700000000000":          {kind: offTime, n: 1700000000000},
		"@2023-11-14T22:13:20.5Z": {kind: offTime, n: 1700000000500},
		"@2023-11-14T22:13:20Z":   {kind: offTime, n: 1700000000000},
	} {
		got, err := parseOffsetSpec("--offset", in, true, true)
		if err != nil || got != want {
			t.Errorf("%q: got %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "@", "@yesterday", "1.5", "@-3"} {
		if _, err := parseOffsetSpec("--offset", bad, true, true); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
	if _, err := parseOffsetSpec("--to", "-1", false, false); err == nil {
		t.Error("--to -1 accepted")
	}
}

// FuzzCompileFormat: no format string panics, and a compiled one formats.
func FuzzCompileFormat(f *testing.F) {
	for _, s := range []string{`%v\n`, `%t %p %o %k %v %T %h %s %S %K %%`, `\x41\t`, `%`, `\`, `\x`, `%q`} {
		f.Add(s)
	}
	rec := testRecord()
	f.Fuzz(func(t *testing.T, s string) {
		fm, err := compileFormat(s)
		if err != nil {
			return
		}
		out := fm.appendRecord(nil, rec)
		if !strings.ContainsAny(s, `%\`) && string(out) != s {
			t.Fatalf("plain %q printed as %q", s, out)
		}
	})
}

func TestReadLine(t *testing.T) {
	long := strings.Repeat("x", 100<<10) // longer than the 64 KiB reader buffer
	in := "\nabc\n" + long + "\n" + "tail"
	r := bufio.NewReaderSize(strings.NewReader(in), 64<<10)
	want := []string{"", "abc", long, "tail"}
	for i, w := range want {
		line, err := readLine(r, len(long))
		if string(line) != w || line == nil || (err != nil) != (i == len(want)-1) {
			t.Fatalf("line %d: got %d bytes (nil %v), err %v; want %d bytes", i, len(line), line == nil, err, len(w))
		}
	}
	if line, err := readLine(r, 10); line != nil || err != io.EOF {
		t.Fatalf("after the end: %q, %v", line, err)
	}
	// Exactly at the limit passes, one byte over fails, with or without '\n'.
	for in, ok := range map[string]bool{"12345\n": true, "12345": true, "123456\n": false, "123456": false} {
		_, err := readLine(bufio.NewReaderSize(strings.NewReader(in), 16), 5)
		if (err == nil || err == io.EOF) != ok {
			t.Errorf("%q with limit 5: err %v", in, err)
		}
	}
}
