package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/sessionflow/sessionflow/generate"
)

func generateCmd() *cobra.Command {
	var (
		users, events int
		seed          uint64
		start, out    string
	)
	cmd := &cobra.Command{
		Use:   "generate",
		Short: "Write a synthetic clickstream as JSON lines",
		Long: `generate writes a realistic synthetic clickstream in the clickstream profile's
layout (uuid, event_timestamp, page_name, event_id), in event-time order:
users browse in bursts of 1-20 pages seconds to minutes apart and come back
35 minutes to 4 hours later. The same --seed gives the same file.`,
		Example: `  starter generate --num-users 100000 --events 5000000 --out clicks.jsonl
  starter generate --num-users 10 --events 50 | starter sessionize --format table`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if users <= 0 || events <= 0 {
				return usageError{fmt.Errorf("--num-users and --events must be positive")}
			}
			at, err := time.Parse(time.RFC3339, start)
			if err != nil {
				return usageError{fmt.Errorf("--start: %w", err)}
			}
			w, closeOut, err := openOutput(out, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			err = generate.Clicks(w, generate.ClickOptions{Users: users, Events: events, Start: at, Seed: seed})
			if cerr := closeOut(); err == nil {
				err = cerr
			}
			return err
		},
	}
	cmd.Flags().IntVar(&users, "num-users", 1000, "distinct users")
	cmd.Flags().IntVar(&events, "events", 100000, "events to write")
	cmd.Flags().Uint64Var(&seed, "seed", 1, "random seed")
	cmd.Flags().StringVar(&start, "start", "2024-01-01T00:00:00Z", "time of the first activity (RFC 3339)")
	cmd.Flags().StringVar(&out, "out", "-", "output file, - for stdout")
	return cmd
}
