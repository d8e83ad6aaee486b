// Test media, made by Debian's ffmpeg (scripts/setup installs it) the first
// time a test asks and kept in target/test-media/: a test pattern with
// noise (so that the encoder cannot shrink it) and a tone.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { ROOT } from './helpers.mjs';

const DIR = `${ROOT}target/test-media`;
const SOURCE = (seconds) => [
  '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=30,noise=alls=30:allf=t',
  '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000', '-t', String(seconds),
];

const KINDS = {
  // VP9 and Opus in WebM, a keyframe (and cluster) each second; ffmpeg
  // writes the Cues after the clusters.
  'vp9.webm': (s) => [...SOURCE(s), '-c:v', 'libvpx-vp9', '-deadline', 'realtime', '-cpu-used', '8',
    '-row-mt', '1', '-b:v', '4M', '-minrate', '4M', '-maxrate', '4M', '-g', '30',
    '-c:a', 'libopus', '-b:a', '64k'],
  // H.264 and AAC, fragmented at each keyframe, with an index (sidx).
  'h264-frag.mp4': (s) => [...SOURCE(s), '-c:v', 'libx264', '-preset', 'ultrafast', '-b:v', '4M',
    '-g', '30', '-c:a', 'aac', '-b:a', '64k',
    '-movflags', '+frag_keyframe+empty_moov+default_base_moof+global_sidx'],
  // For live replay: VP8 and Opus at 1 Mbit/s, a keyframe (and cluster)
  // every half second.
  'live.webm': (s) => [...SOURCE(s), '-c:v', 'libvpx', '-deadline', 'realtime', '-cpu-used', '8',
    '-b:v', '1M', '-minrate', '1M', '-maxrate', '1M', '-g', '15', '-c:a', 'libopus', '-b:a', '64k'],
  // A plain MP4: one mdat, the moov at the end.
  'h264-plain.mp4': (s) => [...SOURCE(s), '-c:v', 'libx264', '-preset', 'ultrafast', '-b:v', '2M',
    '-g', '30', '-c:a', 'aac', '-b:a', '64k'],
};

/** The bytes of `name` (one of KINDS), `seconds` long. */
export function media(name, seconds) {
  mkdirSync(DIR, { recursive: true });
  const path = `${DIR}/${seconds}s-${name}`;
  if (!existsSync(path)) {
    // Made under another name first: a run stopped midway leaves no half file.
    const part = `${DIR}/part-${seconds}s-${name}`;
    execFileSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', ...KINDS[name](seconds), part],
      { stdio: 'inherit' });
    renameSync(part, path);
  }
  return readFileSync(path);
}
