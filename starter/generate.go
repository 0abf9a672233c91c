package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/spf13/cobra"

	"github.com/sessionflow/sessionflow/generate"
)

type generateFlags struct {
	users, devices, events                      int
	seed                                        uint64
	start, out, profile                         string
	rate                                        float64
	duration, gap, lateness                     time.Duration
	brokers, clickTopic, chargeTopic            string
	live, sample                                bool
	outOfOrder, duplicates, late, malformedRate float64
}

func generateCmd() *cobra.Command {
	var f generateFlags
	cmd := &cobra.Command{
		Use:   "generate",
		Short: "Generate realistic clickstream users and charging drones, to a file or Kafka",
		Long: `generate makes synthetic events in the layouts of the built-in profiles.

File mode (the default) writes --events events of --num-users users
(--profile clickstream) or --num-devices drones (--profile charging) as JSON
lines in event-time order: users browse in bursts and come back 35 minutes to
4 hours later; drones charge with short breaks. The same --seed gives the same
file.

Live mode (--brokers, or --live for JSON lines on --out) emits events as they
happen, stamped with the wall clock, at about --rate events/s across
--num-users users (topic --click-topic) and --num-devices drones
(--charging-topic), for --duration or until Ctrl-C. Users pause for 2-6
inactivity gaps (--gap, match your pipeline's rules) so sessions close. Real
streams are messy: --out-of-order, --duplicates, --late and --malformed give
the share of events that arrive out of order (within --lateness/2), twice,
late (2x --lateness behind), or broken.`,
		Example: `  starter generate --num-users 100000 --events 5000000 --out clicks.jsonl
  starter generate --profile charging --num-devices 500 --events 100000 --out drones.jsonl
  starter generate --brokers 127.0.0.1:9092 --num-users 200 --num-devices 50 --rate 200 --gap 20s
  starter generate --sample --num-users 3 --num-devices 2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.validate(); err != nil {
				return usageError{err}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if f.sample {
				return f.runSample(ctx, cmd.OutOrStdout())
			}
			if f.brokers != "" || f.live {
				return f.runLive(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr())
			}
			return f.runFile(cmd.OutOrStdout())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.profile, "profile", "clickstream", "file mode: clickstream or charging")
	fs.IntVar(&f.users, "num-users", 1000, "clickstream users")
	fs.IntVar(&f.devices, "num-devices", 0, "charging drones (file mode with --profile charging: default 1000)")
	fs.IntVar(&f.events, "events", 100000, "file mode: events to write")
	fs.Uint64Var(&f.seed, "seed", 1, "random seed")
	fs.StringVar(&f.start, "start", "2024-01-01T00:00:00Z", "file mode: time of the first activity (RFC 3339)")
	fs.StringVar(&f.out, "out", "-", "output file, - for stdout")
	fs.BoolVar(&f.live, "live", false, "live mode to --out instead of Kafka")
	fs.BoolVar(&f.sample, "sample", false, "print a few live events of each stream and exit")
	fs.Float64Var(&f.rate, "rate", 100, "live mode: events per second, all streams together")
	fs.DurationVar(&f.duration, "duration", 0, "live mode: stop after this long (0: until Ctrl-C)")
	fs.DurationVar(&f.gap, "gap", 30*time.Second, "live mode: the inactivity gap of the rules the stream is for")
	fs.DurationVar(&f.lateness, "lateness", 10*time.Second, "live mode: the allowed lateness of the rules the stream is for")
	fs.StringVar(&f.brokers, "brokers", os.Getenv("KAFKA_BROKERS"), "live mode: comma-separated Kafka brokers (env KAFKA_BROKERS)")
	fs.StringVar(&f.clickTopic, "click-topic", "clicks", "live mode: topic of clickstream events")
	fs.StringVar(&f.chargeTopic, "charging-topic", "telemetry", "live mode: topic of charging telemetry")
	fs.Float64Var(&f.outOfOrder, "out-of-order", 0.05, "live mode: share of events out of order within the lateness")
	fs.Float64Var(&f.duplicates, "duplicates", 0.01, "live mode: share of events sent twice")
	fs.Float64Var(&f.late, "late", 0.005, "live mode: share of events later than the lateness")
	fs.Float64Var(&f.malformedRate, "malformed", 0.001, "live mode: share of malformed messages")
	return cmd
}

func (f *generateFlags) validate() error {
	switch {
	case f.profile != "clickstream" && f.profile != "charging":
		return fmt.Errorf("--profile %q: want clickstream or charging", f.profile)
	case f.users < 0 || f.devices < 0:
		return fmt.Errorf("--num-users and --num-devices must not be negative")
	case f.events <= 0:
		return fmt.Errorf("--events must be positive")
	case f.rate <= 0:
		return fmt.Errorf("--rate must be positive")
	case f.gap <= 0 || f.lateness <= 0:
		return fmt.Errorf("--gap and --lateness must be positive")
	}
	for name, v := range map[string]float64{"--out-of-order": f.outOfOrder, "--duplicates": f.duplicates, "--late": f.late, "--malformed": f.malformedRate} {
		if v < 0 || v > 1 {
			return fmt.Errorf("%s %g: want a share between 0 and 1", name, v)
		}
	}
	return nil
}

func (f *generateFlags) runFile(stdout io.Writer) error {
	at, err := time.Parse(time.RFC3339, f.start)
	if err != nil {
		return usageError{fmt.Errorf("--start: %w", err)}
	}
	w, closeOut, err := openOutput(f.out, stdout)
	if err != nil {
		return err
	}
	if f.profile == "charging" {
		err = generate.Charging(w, generate.ChargingOptions{Devices: f.devices, Events: f.events, Start: at, Seed: f.seed})
	} else {
		err = generate.Clicks(w, generate.ClickOptions{Users: f.users, Events: f.events, Start: at, Seed: f.seed})
	}
	if cerr := closeOut(); err == nil {
		err = cerr
	}
	return err
}

func (f *generateFlags) options() generate.LiveOptions {
	return generate.LiveOptions{Users: f.users, Devices: f.devices, Rate: f.rate, Gap: f.gap, Lateness: f.lateness,
		OutOfOrder: f.outOfOrder, Duplicates: f.duplicates, Late: f.late, Malformed: f.malformedRate, Seed: f.seed}
}

// runSample prints three events of each stream, clean ones.
func (f *generateFlags) runSample(ctx context.Context, stdout io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	o := f.options()
	o.OutOfOrder, o.Duplicates, o.Late, o.Malformed = 0, 0, 0, 0
	o.Rate = 1e6
	seen := map[generate.Kind]int{}
	want := map[generate.Kind]int{}
	if f.users > 0 {
		want[generate.KindClick] = 3
	}
	if f.devices > 0 {
		want[generate.KindCharging] = 3
	}
	_, err := generate.Live(ctx, o, func(k generate.Kind, _ string, v []byte) error {
		if seen[k] < want[k] {
			seen[k]++
			fmt.Fprintf(stdout, "%s\n", v)
		}
		if seen[generate.KindClick] == want[generate.KindClick] && seen[generate.KindCharging] == want[generate.KindCharging] {
			cancel()
		}
		return nil
	})
	return err
}

func (f *generateFlags) runLive(ctx context.Context, stdout, stderr io.Writer) error {
	if f.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.duration)
		defer cancel()
	}
	topics := map[generate.Kind]string{generate.KindClick: f.clickTopic, generate.KindCharging: f.chargeTopic}
	var emit generate.Emit
	var closeFn func() error
	if f.brokers != "" {
		p, err := newProducer(strings.Split(f.brokers, ","), stderr)
		if err != nil {
			return err
		}
		closeFn = p.Close
		emit = func(k generate.Kind, key string, v []byte) error {
			msg := &sarama.ProducerMessage{Topic: topics[k], Value: sarama.ByteEncoder(v)}
			if key != "" {
				msg.Key = sarama.StringEncoder(key)
			}
			select {
			case p.Input() <- msg:
				return nil
			case <-ctx.Done():
				return nil
			}
		}
	} else {
		w, closeOut, err := openOutput(f.out, stdout)
		if err != nil {
			return err
		}
		closeFn = closeOut
		emit = func(_ generate.Kind, _ string, v []byte) error {
			_, err := w.Write(append(v, '\n'))
			return err
		}
	}
	if need := generate.MinActors(f.rate, f.gap); f.users+f.devices < need {
		fmt.Fprintf(stderr, "generate: %d users and devices cannot sustain %.0f events/s with a %s gap; expect less, or use at least %d\n",
			f.users+f.devices, f.rate, f.gap, need)
	}
	started := time.Now()
	sent, err := generate.Live(ctx, f.options(), emit)
	if cerr := closeFn(); err == nil {
		err = cerr
	}
	elapsed := time.Since(started)
	fmt.Fprintf(stderr, "generate: %d messages in %s (%.0f/s)\n", sent, elapsed.Round(time.Second), float64(sent)/elapsed.Seconds())
	return err
}

// newProducer is an asynchronous producer whose failures are reported, not
// fatal: a generator should keep going while a broker restarts.
func newProducer(brokers []string, stderr io.Writer) (sarama.AsyncProducer, error) {
	cfg := sarama.NewConfig()
	cfg.Producer.Return.Errors = true
	cfg.Producer.Partitioner = sarama.NewHashPartitioner // a key stays on one partition
	cfg.Producer.Flush.Frequency = 10 * time.Millisecond
	cfg.Producer.MaxMessageBytes = 8 << 20
	p, err := sarama.NewAsyncProducer(brokers, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to kafka %s: %w", strings.Join(brokers, ","), err)
	}
	go func() {
		for e := range p.Errors() {
			fmt.Fprintf(stderr, "generate: produce to %s: %v\n", e.Msg.Topic, e.Err)
		}
	}()
	return p, nil
}
