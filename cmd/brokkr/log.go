package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/brokkr/brokkr/core/codec"
	"github.com/brokkr/brokkr/segment"
	"github.com/spf13/cobra"
)

func newLogCmd() *cobra.Command {
	logCmd := &cobra.Command{Use: "log", Short: "Inspect log files on disk"}
	var records, asJSON bool
	dump := &cobra.Command{
		Use:   "dump PATH...",
		Short: "Print the batches of .log files and the entries of .index and .timeindex files",
		Long: `Prints a segment file the way Kafka's kafka-dump-log does: for a .log
file, one line per batch (offset range, count, leader epoch, timestamp,
codec, CRC check, size); with --records, every record too. For .index and
.timeindex files, their entries. A damaged file is printed up to the damage,
then the damage is reported and the exit code is 1.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			var failed []string
			for _, p := range args {
				if err := dumpFile(out, p, records, asJSON); err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: %v\n", p, err)
					failed = append(failed, p)
				}
			}
			if len(failed) > 0 {
				return &exitError{code: 1, err: fmt.Errorf("could not dump all of %s", strings.Join(failed, ", "))}
			}
			return nil
		},
	}
	dump.Flags().BoolVar(&records, "records", false, "decode and print every record (keys and values as text when printable)")
	dump.Flags().BoolVar(&asJSON, "json", false, "one JSON object per batch, index entry or record")
	logCmd.AddCommand(dump)
	return logCmd
}

func baseFromName(p string) (int64, error) {
	name := filepath.Base(p)
	stem := name[:len(name)-len(filepath.Ext(name))]
	base, err := strconv.ParseInt(stem, 10, 64)
	if err != nil || len(stem) != 20 {
		return 0, fmt.Errorf("file name %q is not a 20-digit base offset", name)
	}
	return base, nil
}

func dumpFile(out io.Writer, p string, records, asJSON bool) error {
	base, err := baseFromName(p)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Dumping %s\n", p)
	switch filepath.Ext(p) {
	case ".log":
		return dumpLog(out, p, records, asJSON)
	case ".index":
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, e := range segment.ParseOffsetIndex(data, base) {
			if asJSON {
				printJSON(out, map[string]any{"offset": e.Offset, "position": e.Position})
			} else {
				fmt.Fprintf(out, "offset: %d position: %d\n", e.Offset, e.Position)
			}
		}
		return nil
	case ".timeindex":
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, e := range segment.ParseTimeIndex(data, base) {
			if asJSON {
				printJSON(out, map[string]any{"timestamp": e.Timestamp, "offset": e.Offset})
			} else {
				fmt.Fprintf(out, "timestamp: %d offset: %d\n", e.Timestamp, e.Offset)
			}
		}
		return nil
	}
	return fmt.Errorf("unknown file type %q: want .log, .index or .timeindex", filepath.Ext(p))
}

func printJSON(out io.Writer, v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintf(out, "%s\n", b)
}

func dumpLog(out io.Writer, p string, records, asJSON bool) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	bad := 0
	err = segment.ScanLog(f, 0, st.Size(), func(pos int64, h segment.BatchHeader, crcOK bool) error {
		if !crcOK {
			bad++
		}
		tsType := "CreateTime"
		if h.LogAppendTime() {
			tsType = "LogAppendTime"
		}
		lastSeq := int32(-1)
		if h.BaseSequence >= 0 {
			lastSeq = h.BaseSequence + h.LastOffsetDelta
		}
		if asJSON {
			printJSON(out, map[string]any{
				"baseOffset": h.BaseOffset, "lastOffset": h.LastOffset(), "count": h.RecordCount,
				"baseSequence": h.BaseSequence, "lastSequence": lastSeq, "producerId": h.ProducerID,
				"producerEpoch": h.ProducerEpoch, "partitionLeaderEpoch": h.PartitionLeaderEpoch,
				"isTransactional": h.Transactional(), "isControl": h.Control(), "position": pos,
				"timestampType": tsType, "maxTimestamp": h.MaxTimestamp, "size": h.Size(), "magic": h.Magic,
				"compresscodec": codec.Name(h.Codec()), "crc": h.CRC, "isvalid": crcOK,
			})
		} else {
			fmt.Fprintf(out, "baseOffset: %d lastOffset: %d count: %d baseSequence: %d lastSequence: %d producerId: %d producerEpoch: %d partitionLeaderEpoch: %d isTransactional: %t isControl: %t position: %d %s: %d size: %d magic: %d compresscodec: %s crc: %d isvalid: %t\n",
				h.BaseOffset, h.LastOffset(), h.RecordCount, h.BaseSequence, lastSeq, h.ProducerID, h.ProducerEpoch,
				h.PartitionLeaderEpoch, h.Transactional(), h.Control(), pos, tsType, h.MaxTimestamp, h.Size(), h.Magic,
				codec.Name(h.Codec()), h.CRC, crcOK)
		}
		if records && crcOK {
			return dumpRecords(out, f, pos, h, asJSON)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if bad > 0 {
		return fmt.Errorf("%d batch(es) failed the CRC check", bad)
	}
	return nil
}

func dumpRecords(out io.Writer, f *os.File, pos int64, h segment.BatchHeader, asJSON bool) error {
	batch := make([]byte, h.Size())
	if _, err := f.ReadAt(batch, pos); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	plain, err := codec.PlainBatch(batch, 256<<20)
	if err != nil {
		fmt.Fprintf(out, "| cannot decompress the records: %v\n", err)
		return nil
	}
	batch = plain
	return segment.WalkRecords(batch, func(r segment.Record) error {
		off := h.BaseOffset + int64(r.OffsetDelta)
		ts := h.BaseTimestamp + r.TimestampDelta
		if asJSON {
			m := map[string]any{"offset": off, "timestamp": ts, "keySize": size(r.Key), "valueSize": size(r.Value)}
			if r.Key != nil {
				m["key"] = printable(r.Key)
			}
			if r.Value != nil {
				m["payload"] = printable(r.Value)
			}
			hs := map[string]string{}
			for _, hd := range r.Headers {
				hs[hd.Key] = printable(hd.Value)
			}
			if len(hs) > 0 {
				m["headers"] = hs
			}
			printJSON(out, m)
			return nil
		}
		var hdrs []string
		for _, hd := range r.Headers {
			hdrs = append(hdrs, hd.Key+":"+printable(hd.Value))
		}
		fmt.Fprintf(out, "| offset: %d timestamp: %d keySize: %d valueSize: %d headerKeys: [%s] key: %s payload: %s\n",
			off, ts, size(r.Key), size(r.Value), strings.Join(hdrs, ","), printable(r.Key), printable(r.Value))
		return nil
	})
}

func size(b []byte) int {
	if b == nil {
		return -1
	}
	return len(b)
}

// printable shows text as it is and anything else as quoted Go bytes.
func printable(b []byte) string {
	if b == nil {
		return "null"
	}
	if utf8.Valid(b) {
		return string(b)
	}
	return strconv.Quote(string(b))
}
