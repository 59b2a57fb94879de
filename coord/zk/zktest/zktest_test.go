package zktest

import (
	"testing"
	"time"
)

// TestStartRestart proves the helper starts a real server that answers,
// that Kill9 really stops it and that StartAgain brings it back on the same
// port.
func TestStartRestart(t *testing.T) {
	t0 := time.Now()
	s := Start(t)
	t.Logf("started in %v at %s (pid %d)", time.Since(t0), s.Addr(), s.PID())
	if got, err := FourLetter(s.Addr(), "ruok"); got != "imok" {
		t.Fatalf("ruok = %q, %v", got, err)
	}
	pid := s.PID()
	s.Kill9()
	if got, err := FourLetter(s.Addr(), "ruok"); err == nil && got == "imok" {
		t.Fatalf("server still answers after Kill9")
	}
	t0 = time.Now()
	s.StartAgain()
	t.Logf("restarted in %v", time.Since(t0))
	if s.PID() == pid || s.PID() == 0 {
		t.Fatalf("pid after restart = %d, before %d", s.PID(), pid)
	}
	if got, err := FourLetter(s.Addr(), "ruok"); got != "imok" {
		t.Fatalf("ruok after restart = %q, %v", got, err)
	}
}
