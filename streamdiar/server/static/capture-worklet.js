// Runs in the AudioWorklet of a 16 kHz AudioContext: gathers the microphone's first channel
// into blocks of `frames` samples (100 ms by default) and posts each to the page, which sends
// it to the server. The page's thread never touches the samples one by one.
class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.frames = (options.processorOptions && options.processorOptions.frames) || 1600;
    this.block = new Float32Array(this.frames);
    this.filled = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      let offset = 0;
      while (offset < channel.length) {
        const take = Math.min(channel.length - offset, this.frames - this.filled);
        this.block.set(channel.subarray(offset, offset + take), this.filled);
        this.filled += take;
        offset += take;
        if (this.filled === this.frames) {
          this.port.postMessage(this.block, [this.block.buffer]);
          this.block = new Float32Array(this.frames);
          this.filled = 0;
        }
      }
    }
    return true;
  }
}

registerProcessor("streamdiar-capture", CaptureProcessor);
