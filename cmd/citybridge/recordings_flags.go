package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// days is a flag of a duration that may be written in days: 90d, 36h,
// 1h30m, or 0 for none.
type days time.Duration

func (d *days) String() string {
	if d == nil || *d == 0 {
		return "0"
	}
	if v := time.Duration(*d); v%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(v/(24*time.Hour)), 10) + "d"
	}
	return time.Duration(*d).String()
}

func (d *days) Set(s string) error {
	t := strings.TrimSpace(s)
	if n, ok := strings.CutSuffix(t, "d"); ok {
		v, err := strconv.ParseUint(n, 10, 32)
		if err != nil || v > 100*366 {
			return fmt.Errorf("%q is not a number of days (90d)", s)
		}
		*d = days(time.Duration(v) * 24 * time.Hour)
		return nil
	}
	if t == "0" {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(t)
	if err != nil || v < 0 {
		return fmt.Errorf("%q is not a duration (90d, 36h, or 0 for none)", s)
	}
	*d = days(v)
	return nil
}
