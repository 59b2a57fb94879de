package config

import (
	"fmt"
	"strings"
)

// Property is one key=value read from a properties file, with where it came from.
type Property struct {
	Key, Value string
	File       string
	Line       int
}

// Where says "file:line" for messages, or "--override" for overrides.
func (p Property) Where() string {
	if p.File == "" {
		return "--override"
	}
	return fmt.Sprintf("%s:%d", p.File, p.Line)
}

// ParseProperties reads the Java properties format Kafka's server.properties
// uses: "key=value", "key: value" or "key value"; '#' and '!' start comment
// lines; a line ending in an odd number of backslashes continues on the next
// line; \t \n \r \f \\ \uXXXX escapes; whitespace around keys and before values
// is dropped. Lines are numbered from 1 where each logical line starts.
func ParseProperties(file string, data string) ([]Property, error) {
	var out []Property
	lines := strings.Split(strings.ReplaceAll(data, "\r\n", "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		start := i + 1
		line := strings.TrimLeft(lines[i], " \t\f")
		if line == "" || line[0] == '#' || line[0] == '!' {
			continue
		}
		for endsWithContinuation(line) && i+1 < len(lines) {
			i++
			line = line[:len(line)-1] + strings.TrimLeft(lines[i], " \t\f")
		}
		if endsWithContinuation(line) {
			line = line[:len(line)-1]
		}
		key, value, err := splitProperty(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", file, start, err)
		}
		if key == "" {
			return nil, fmt.Errorf("%s:%d: empty key", file, start)
		}
		out = append(out, Property{Key: key, Value: value, File: file, Line: start})
	}
	return out, nil
}

func endsWithContinuation(s string) bool {
	n := 0
	for i := len(s) - 1; i >= 0 && s[i] == '\\'; i-- {
		n++
	}
	return n%2 == 1
}

// splitProperty splits a logical line at the first unescaped '=', ':' or
// whitespace and unescapes both halves.
func splitProperty(line string) (key, value string, err error) {
	sep := -1
	for i := 0; i < len(line); i++ {
		c := line[i]
		if c == '\\' {
			i++
			continue
		}
		if c == '=' || c == ':' || c == ' ' || c == '\t' || c == '\f' {
			sep = i
			break
		}
	}
	rawKey, rawVal := line, ""
	if sep >= 0 {
		rawKey = line[:sep]
		rest := strings.TrimLeft(line[sep:], " \t\f")
		if len(rest) > 0 && (rest[0] == '=' || rest[0] == ':') {
			rest = strings.TrimLeft(rest[1:], " \t\f")
		}
		rawVal = rest
	}
	if key, err = unescape(rawKey); err != nil {
		return "", "", err
	}
	if value, err = unescape(rawVal); err != nil {
		return "", "", err
	}
	return key, strings.TrimRight(value, " \t"), nil
}

func unescape(s string) (string, error) {
	if !strings.Contains(s, "\\") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch s[i] {
		case 't':
			b.WriteByte('\t')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 'f':
			b.WriteByte('\f')
		case 'u':
			if i+5 > len(s) {
				return "", fmt.Errorf("truncated \\u escape")
			}
			var r rune
			if _, err := fmt.Sscanf(s[i+1:i+5], "%04x", &r); err != nil {
				return "", fmt.Errorf("bad \\u escape %q", s[i-1:i+5])
			}
			b.WriteRune(r)
			i += 4
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String(), nil
}
