package group

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
)

// The scenario language (testdata/*.txt):
//
//	config min-session=6s max-session=30m delay=3s max-size=3 autostore=false
//	join client=a [member=ID] [inst=X] [v=5] [proto=range,roundrobin] [meta=M]
//	     [session=10s] [rebalance=30s] [ptype=consumer]
//	sync member=ID gen=N [inst=X] [assign=ID:bytes,ID:bytes] [ptype=] [proto=]
//	heartbeat member=ID gen=N [inst=X]
//	leave ID ID/INST /INST     (batch; "/INST" leaves by instance id only)
//	stored gen=N [err=CODE]    (when autostore=false)
//	tick +10s
//	describe
//	expect state=Stable gen=1 leader=ID members=ID,ID
//	delete
//	inflight                   (requests not answered yet)
//
// Every command prints what the machine released. Member ids are the
// client id (or instance id) followed by a counter: a-1, b-2.
type harness struct {
	t         testing.TB
	g         *Group
	now       time.Time
	nextReq   ReqID
	seq       int
	autostore bool
	answered  map[ReqID]bool
	parked    map[ReqID]bool
}

func newHarness(t testing.TB, cfg Config) *harness {
	h := &harness{t: t, now: time.Unix(1_000_000, 0), autostore: true, answered: map[ReqID]bool{}, parked: map[ReqID]bool{}}
	g, err := New(cfg, WithMemberIDs(func(prefix string) string {
		h.seq++
		return fmt.Sprintf("%s-%d", prefix, h.seq)
	}))
	if err != nil {
		t.Fatal(err)
	}
	h.g = g
	return h
}

func (h *harness) answer(req ReqID) {
	if h.answered[req] {
		h.t.Fatalf("request %d answered twice", req)
	}
	h.answered[req] = true
	delete(h.parked, req)
}

func (h *harness) print(b *strings.Builder, r Ready) {
	for _, j := range r.Joins {
		h.answer(j.Req)
		fmt.Fprintf(b, "join req=%d", j.Req)
		if j.ErrorCode != 0 {
			fmt.Fprintf(b, " err=%s", errName(j.ErrorCode))
		}
		fmt.Fprintf(b, " member=%s gen=%d", j.MemberID, j.Generation)
		if j.ErrorCode == 0 {
			fmt.Fprintf(b, " proto=%s/%s leader=%s", j.ProtocolType, j.Protocol, j.Leader)
			if j.SkipAssignment {
				b.WriteString(" skip-assignment")
			}
			if len(j.Members) > 0 {
				var ms []string
				for _, m := range j.Members {
					s := m.MemberID
					if m.InstanceID != "" {
						s += "/" + m.InstanceID
					}
					ms = append(ms, s+":"+string(m.Metadata))
				}
				fmt.Fprintf(b, " members=%s", strings.Join(ms, ","))
			}
		}
		b.WriteString("\n")
	}
	for _, s := range r.Syncs {
		h.answer(s.Req)
		fmt.Fprintf(b, "sync req=%d member=%s", s.Req, s.MemberID)
		if s.ErrorCode != 0 {
			fmt.Fprintf(b, " err=%s\n", errName(s.ErrorCode))
		} else {
			fmt.Fprintf(b, " assign=%s\n", s.Assignment)
		}
	}
	if st := r.Store; st != nil {
		fmt.Fprintf(b, "store gen=%d proto=%s leader=%s", st.Generation, st.Protocol, st.Leader)
		for _, m := range st.Members {
			fmt.Fprintf(b, " %s=%s", m.MemberID, m.Assignment)
		}
		b.WriteString("\n")
		if h.autostore && h.g.State() == CompletingRebalance && st.Generation == h.g.Generation() {
			h.print(b, h.g.Stored(h.now, st.Generation, 0))
		}
	}
}

func (h *harness) req() ReqID {
	h.nextReq++
	h.parked[h.nextReq] = true
	return h.nextReq
}

func dur(t testing.TB, s string) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("bad duration %q: %v", s, err)
	}
	return d
}

func (h *harness) run(t *testing.T, d *datadriven.TestData) string {
	h.t = t
	args := map[string]string{}
	var bare []string
	for _, a := range d.CmdArgs {
		if len(a.Vals) == 0 {
			bare = append(bare, a.Key)
		} else {
			args[a.Key] = strings.Join(a.Vals, ",")
		}
	}
	get := func(k, def string) string {
		if v, ok := args[k]; ok {
			return v
		}
		return def
	}
	atoi := func(k, def string) int {
		n, err := strconv.Atoi(get(k, def))
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		return n
	}
	var b strings.Builder
	before, beforeGen := h.g.State(), h.g.Generation()
	switch d.Cmd {
	case "config":
		cfg := DefaultConfig()
		cfg.MinSessionTimeout = dur(t, get("min-session", "6s"))
		cfg.MaxSessionTimeout = dur(t, get("max-session", "30m"))
		cfg.InitialRebalanceDelay = dur(t, get("delay", "3s"))
		cfg.MaxSize = atoi("max-size", strconv.Itoa(cfg.MaxSize))
		*h = *newHarness(t, cfg)
		h.autostore = get("autostore", "true") == "true"
		return "ok\n"
	case "join":
		client := get("client", "c")
		meta := get("meta", client)
		var ps []Protocol
		for _, p := range strings.Split(get("proto", "range"), ",") {
			ps = append(ps, Protocol{Name: p, Metadata: []byte(meta)})
		}
		j := Join{Req: h.req(), MemberID: get("member", ""), InstanceID: get("inst", ""), ClientID: client,
			ClientHost: "/127.0.0.1", SessionTimeout: dur(t, get("session", "10s")),
			RebalanceTimeout: dur(t, get("rebalance", "30s")), ProtocolType: get("ptype", "consumer"),
			Protocols: ps, Version: int16(atoi("v", "5"))}
		h.print(&b, h.g.Join(h.now, j))
	case "sync":
		s := Sync{Req: h.req(), MemberID: get("member", ""), InstanceID: get("inst", ""),
			Generation: int32(atoi("gen", "0")), ProtocolType: get("ptype", ""), Protocol: get("proto", "")}
		if a := get("assign", ""); a != "" {
			for _, kv := range strings.Split(a, ",") {
				id, v, _ := strings.Cut(kv, ":")
				s.Assignments = append(s.Assignments, Assignment{MemberID: id, Assignment: []byte(v)})
			}
		}
		h.print(&b, h.g.Sync(h.now, s))
	case "heartbeat":
		r := h.g.Heartbeat(h.now, Heartbeat{MemberID: get("member", ""), InstanceID: get("inst", ""), Generation: int32(atoi("gen", "0"))})
		fmt.Fprintf(&b, "heartbeat err=%s\n", errName(r.ErrorCode))
	case "leave":
		var l Leave
		for _, x := range bare {
			id, inst, _ := strings.Cut(x, "/")
			l.Members = append(l.Members, LeaveMember{MemberID: id, InstanceID: inst})
		}
		r, rd := h.g.Leave(h.now, l)
		fmt.Fprintf(&b, "leave err=%s", errName(r.ErrorCode))
		for _, m := range r.Members {
			fmt.Fprintf(&b, " %s/%s:%s", m.MemberID, m.InstanceID, errName(m.ErrorCode))
		}
		b.WriteString("\n")
		h.print(&b, rd)
	case "stored":
		h.print(&b, h.g.Stored(h.now, int32(atoi("gen", "0")), int16(atoi("err", "0"))))
	case "tick":
		if len(bare) != 1 {
			t.Fatalf("tick +DURATION")
		}
		h.now = h.now.Add(dur(t, strings.TrimPrefix(bare[0], "+")))
		h.print(&b, h.g.Tick(h.now))
	case "inflight":
		var ids []int
		for r := range h.parked {
			ids = append(ids, int(r))
		}
		slices.Sort(ids)
		fmt.Fprintf(&b, "inflight=%v\n", ids)
	case "delete":
		fmt.Fprintf(&b, "delete err=%s\n", errName(h.g.Delete(h.now)))
	case "describe":
		ds := h.g.Describe()
		fmt.Fprintf(&b, "state=%s gen=%d proto=%s/%s leader=%s\n", ds.State, ds.Generation, ds.ProtocolType, ds.Protocol, ds.Leader)
		for _, m := range ds.Members {
			fmt.Fprintf(&b, "  %s inst=%s client=%s host=%s meta=%s assign=%s\n", m.MemberID, m.InstanceID, m.ClientID, m.ClientHost, m.Metadata, m.Assignment)
		}
	case "expect":
		ds := h.g.Describe()
		var ids []string
		for _, m := range ds.Members {
			ids = append(ids, m.MemberID)
		}
		have := map[string]string{
			"state": ds.State.String(), "gen": strconv.Itoa(int(ds.Generation)), "leader": ds.Leader,
			"members": strings.Join(ids, ","), "proto": ds.Protocol, "empty": strconv.FormatBool(h.g.IsEmpty()),
		}
		keys := make([]string, 0, len(args))
		for k := range args {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			hv, ok := have[k]
			if !ok {
				t.Fatalf("%s: unknown expectation %q", d.Pos, k)
			}
			if hv != args[k] {
				t.Errorf("%s: %s=%s, want %s", d.Pos, k, hv, args[k])
			}
		}
		return "ok\n"
	default:
		t.Fatalf("%s: unknown command %q", d.Pos, d.Cmd)
	}
	if h.g.State() != before || h.g.Generation() != beforeGen {
		fmt.Fprintf(&b, "state %s/%d -> %s/%d\n", before, beforeGen, h.g.State(), h.g.Generation())
	}
	if b.Len() == 0 {
		return "(nothing)\n"
	}
	return b.String()
}

func TestScenarios(t *testing.T) {
	// Only testdata/*.txt: testdata/fuzz holds the fuzz corpus.
	paths, err := filepath.Glob("testdata/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) < 10 {
		t.Fatalf("found %d scenario files", len(paths))
	}
	for _, path := range paths {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txt"), func(t *testing.T) {
			h := newHarness(t, DefaultConfig())
			datadriven.RunTest(t, path, h.run)
		})
	}
}
