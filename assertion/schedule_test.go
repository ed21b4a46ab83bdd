package assertion

import (
	"testing"
	"time"

	"github.com/exed-dev/exed/store"
)

var day0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

func at(days float64) time.Time { return day0.Add(time.Duration(days * 24 * float64(time.Hour))) }

func states(keys []store.AssertionKey, now time.Time) []State {
	var out []State
	for _, st := range Status(keys, now) {
		out = append(out, st.State)
	}
	return out
}

func equalStates(a, b []State) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestSchedule walks the rotation schedule day by day: a key
// is published 24 h before it signs, signs 30 days, and stays published
// 7 days after.
func TestSchedule(t *testing.T) {
	var keys []store.AssertionKey
	add := func(now time.Time) {
		t.Helper()
		gen, signFrom, due := nextKeyDue(keys, now)
		if !due {
			t.Fatalf("at %v: no key due", now)
		}
		keys = append(keys, store.AssertionKey{ID: string(rune('a' + gen - 1)), Generation: gen, CreatedAt: now, SignFrom: signFrom})
	}
	notDue := func(now time.Time) {
		t.Helper()
		if _, _, due := nextKeyDue(keys, now); due {
			t.Fatalf("at %v: a key is due, want none", now)
		}
	}

	add(at(0)) // the first key signs at once
	if keys[0].SignFrom != at(0) {
		t.Fatalf("first key signs from %v, want at once", keys[0].SignFrom)
	}
	if got := states(keys, at(0)); !equalStates(got, []State{StateSigning}) {
		t.Fatalf("day 0: %v", got)
	}
	notDue(at(28.9))
	add(at(29)) // 24 h before key a has signed 30 days
	if keys[1].SignFrom != at(30) {
		t.Fatalf("second key signs from %v, want day 30", keys[1].SignFrom)
	}
	notDue(at(29.5)) // the next waits: nothing more is due
	for _, c := range []struct {
		day  float64
		want []State
	}{
		{29, []State{StateSigning, StatePublished}},
		{29.99, []State{StateSigning, StatePublished}},
		{30, []State{StatePublished, StateSigning}},
		{36.99, []State{StatePublished, StateSigning}},
		{37, []State{StateRetired, StateSigning}},
	} {
		if got := states(keys, at(c.day)); !equalStates(got, c.want) {
			t.Errorf("day %v: %v, want %v", c.day, got, c.want)
		}
	}
	st := Status(keys, at(31))
	if st[0].SignUntil != at(30) || st[0].RetireAt != at(37) || st[0].Planned {
		t.Errorf("key a: %+v, want signing until day 30, retired day 37", st[0])
	}
	if st[1].SignUntil != at(60) || st[1].RetireAt != at(67) || !st[1].Planned {
		t.Errorf("key b: %+v, want planned until day 60, retired day 67", st[1])
	}

	// The instances were all down when key c was due (day 59): it is added
	// when one comes back, and still published a day before it signs.
	notDue(at(58.9))
	add(at(75))
	if keys[2].SignFrom != at(76) {
		t.Fatalf("late key signs from %v, want day 76", keys[2].SignFrom)
	}
	if got := states(keys, at(75.5)); !equalStates(got, []State{StateRetired, StateSigning, StatePublished}) {
		t.Errorf("day 75.5: %v", got)
	}

	// rotate --now on day 76.5 while nothing waits: d signs at once, c
	// stays published for 7 days.
	keys = append(keys, store.AssertionKey{ID: "d", Generation: 4, CreatedAt: at(76.5), SignFrom: at(76.5)})
	if got := states(keys, at(76.5)); !equalStates(got, []State{StateRetired, StatePublished, StatePublished, StateSigning}) {
		t.Errorf("after rotate --now: %v", got)
	}
	if got := states(keys, at(83.5)); !equalStates(got, []State{StateRetired, StateRetired, StateRetired, StateSigning}) {
		t.Errorf("7 days after rotate --now: %v", got)
	}
}

// A key superseded before its turn (rotate --now while another waited)
// never signs and retires 7 days after the one that overtook it began.
func TestScheduleOvertaken(t *testing.T) {
	keys := []store.AssertionKey{
		{ID: "a", Generation: 1, CreatedAt: at(0), SignFrom: at(0)},
		{ID: "b", Generation: 2, CreatedAt: at(29), SignFrom: at(30)},
		{ID: "c", Generation: 3, CreatedAt: at(29.5), SignFrom: at(29.5)},
	}
	for _, c := range []struct {
		day  float64
		want []State
	}{
		{29.5, []State{StatePublished, StatePublished, StateSigning}},
		{30, []State{StatePublished, StatePublished, StateSigning}},
		{36.5, []State{StateRetired, StateRetired, StateSigning}},
	} {
		if got := states(keys, at(c.day)); !equalStates(got, c.want) {
			t.Errorf("day %v: %v, want %v", c.day, got, c.want)
		}
	}
	// A clock a little behind the first key's maker still signs with it.
	if i := signerIndex(keys[:1], at(-0.001)); i != 0 {
		t.Errorf("signer before the first key's SignFrom: %d, want 0", i)
	}
}
