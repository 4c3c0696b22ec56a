using System.Security.Cryptography;
using TauCluster.Engine;

namespace TauCluster.Training;

/// <summary>
/// A text file as bytes (token id = byte value), split into a training part and the held-out validation part at its
/// end. Training batches are random windows of sequence_len + 1 bytes (inputs and their next-byte targets) drawn with
/// a seeded generator; validation uses fixed windows spread evenly over the held-out part.
/// </summary>
public sealed class ByteCorpus
{
    private readonly byte[] bytes;

    private ByteCorpus(byte[] bytes, int trainLength, string sha256)
    {
        this.bytes = bytes;
        TrainLength = trainLength;
        Sha256 = sha256;
    }

    public int Length => bytes.Length;
    public int TrainLength { get; }
    public int ValidationLength => bytes.Length - TrainLength;
    public string Sha256 { get; }

    /// <summary>Reads the file; each part must hold at least one window of <paramref name="sequenceLength"/> + 1 bytes.</summary>
    public static ByteCorpus Load(string path, double validationFraction, int sequenceLength)
    {
        if (!File.Exists(path)) throw new InvalidTrainingOptionsException($"--corpus {path}: file not found");
        var bytes = File.ReadAllBytes(path);
        int window = sequenceLength + 1;
        int validation = Math.Max(window, (int)Math.Round(bytes.LongLength * validationFraction));
        if (bytes.Length - validation < window)
            throw new InvalidTrainingOptionsException(
                $"--corpus {path} holds {bytes.Length} bytes: too few for a training and a validation window of {window} bytes each (--seq-len {sequenceLength}, --val-fraction {validationFraction})");
        return new ByteCorpus(bytes, bytes.Length - validation, Convert.ToHexStringLower(SHA256.HashData(bytes)));
    }

    /// <summary>Fills sequences × sequenceLength inputs and their targets (the next bytes) from random training windows.</summary>
    public void SampleBatch(Xoshiro256 rng, int sequences, int sequenceLength, Span<int> inputs, Span<int> targets)
    {
        int starts = TrainLength - sequenceLength;   // a window [s, s + sequenceLength] must fit in the training part
        for (int b = 0; b < sequences; b++)
        {
            int start = (int)(rng.NextUInt64() % (ulong)starts);
            Window(start, sequenceLength, inputs.Slice(b * sequenceLength, sequenceLength), targets.Slice(b * sequenceLength, sequenceLength));
        }
    }

    /// <summary>The start of validation window <paramref name="index"/> of <paramref name="count"/>, evenly spread (absolute offsets).</summary>
    public int ValidationStart(int index, int count, int sequenceLength)
    {
        long span = ValidationLength - sequenceLength - 1;
        return TrainLength + (int)(count <= 1 ? 0 : span * index / (count - 1));
    }

    public void Window(int start, int sequenceLength, Span<int> inputs, Span<int> targets)
    {
        for (int t = 0; t < sequenceLength; t++)
        {
            inputs[t] = bytes[start + t];
            targets[t] = bytes[start + t + 1];
        }
    }
}
