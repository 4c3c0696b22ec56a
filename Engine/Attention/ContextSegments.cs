using System.Runtime.InteropServices;

namespace TauCluster.Engine;

/// <summary>
/// Softmax partials, one per (query, key group): the group's weights sum to e^LogScale · Sum and its weighted values to
/// e^LogScale · Vector. They merge like online softmax in any number of steps, which is what lets a long session's keys
/// live in context shards: a shard answers a query λ with one partial per segment it holds.
/// </summary>
public sealed class SoftmaxPartials
{
    public SoftmaxPartials(int count, int width)
    {
        Count = count;
        Width = width;
        LogScales = new double[count];
        Sums = new double[count];
        Vectors = new float[count * width];
    }

    public int Count { get; }
    public int Width { get; }
    public double[] LogScales { get; }
    public double[] Sums { get; }
    public float[] Vectors { get; }

    public ReadOnlySpan<float> Vector(int index) => Vectors.AsSpan(index * Width, Width);

    /// <summary>Bytes on the wire: two doubles and Width floats per partial.</summary>
    public static int BytesPer(int width) => 2 * sizeof(double) + width * sizeof(float);

    /// <summary>Little-endian: every log-scale, every sum, then every vector.</summary>
    public byte[] ToBytes()
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("context shards need a little-endian machine");
        var bytes = new byte[Count * BytesPer(Width)];
        MemoryMarshal.AsBytes(LogScales.AsSpan()).CopyTo(bytes);
        MemoryMarshal.AsBytes(Sums.AsSpan()).CopyTo(bytes.AsSpan(Count * sizeof(double)));
        MemoryMarshal.AsBytes(Vectors.AsSpan()).CopyTo(bytes.AsSpan(2 * Count * sizeof(double)));
        return bytes;
    }

    public static SoftmaxPartials FromBytes(ReadOnlySpan<byte> bytes, int width)
    {
        int per = BytesPer(width);
        if (bytes.Length % per != 0) throw new InvalidDataException($"{bytes.Length} bytes are not whole partials of width {width}");
        var partials = new SoftmaxPartials(bytes.Length / per, width);
        int n = partials.Count;
        bytes[..(n * sizeof(double))].CopyTo(MemoryMarshal.AsBytes(partials.LogScales.AsSpan()));
        bytes.Slice(n * sizeof(double), n * sizeof(double)).CopyTo(MemoryMarshal.AsBytes(partials.Sums.AsSpan()));
        bytes[(2 * n * sizeof(double))..].CopyTo(MemoryMarshal.AsBytes(partials.Vectors.AsSpan()));
        return partials;
    }

    /// <summary>Copies <paramref name="count"/> partials from <paramref name="from"/> into this at <paramref name="to"/>.</summary>
    public void CopyFrom(SoftmaxPartials source, int from, int to, int count)
    {
        source.LogScales.AsSpan(from, count).CopyTo(LogScales.AsSpan(to));
        source.Sums.AsSpan(from, count).CopyTo(Sums.AsSpan(to));
        source.Vectors.AsSpan(from * Width, count * Width).CopyTo(Vectors.AsSpan(to * Width));
    }
}

/// <summary>
/// One sealed segment of a λ index (<see cref="LambdaIndex.SegmentSize"/> keys of contiguous positions, one layer and kv
/// head): what a context shard holds. It is rebuilt from its keys in position order, bitwise as the index built it.
/// </summary>
public sealed class LambdaSegment
{
    private readonly LambdaIndex.Run run;
    private readonly int width;
    private readonly float temperature;
    private readonly float slope;

    internal LambdaSegment(LambdaIndex.Run run, int width, float temperature, float recencySlope) =>
        (this.run, this.width, this.temperature, slope) = (run, width, temperature, recencySlope);

    public int Start => run.Start;
    public long Bytes => run.Bytes;

    /// <summary>Builds a segment from λk and values in position order, as the index builds one.</summary>
    public static LambdaSegment FromPositionOrder(int start, float[] lambdas, float[] values, int width, float temperature, float recencySlope = 0)
    {
        if (lambdas.Length != LambdaIndex.SegmentSize || values.Length != lambdas.Length * width)
            throw new InvalidDataException($"a segment holds {LambdaIndex.SegmentSize} keys of width {width}, not {lambdas.Length} keys and {values.Length} values");
        return new LambdaSegment(LambdaIndex.Run.FromPositionOrder(start, lambdas, values, width, temperature, recencySlope), width, temperature, recencySlope);
    }

    /// <summary>The segment's λk and values in position order: what a shard is sent and rebuilds it from.</summary>
    public (float[] Lambdas, float[] Values) ToPositionOrder()
    {
        var lambdas = new float[run.Size];
        var values = new float[run.Size * width];
        for (int i = 0; i < run.Size; i++)
        {
            int p = run.Positions[i] - run.Start;
            lambdas[p] = run.Lambdas[i];
            run.Values.AsSpan(i * width, width).CopyTo(values.AsSpan(p * width, width));
        }
        return (lambdas, values);
    }

    /// <summary>
    /// Writes this segment's partial for a query λ at <paramref name="queryPosition"/> (the recency bias needs it) into entry
    /// <paramref name="index"/>, exactly as the index merges it.
    /// </summary>
    public void Query(float lambdaQuery, int queryPosition, SegmentScratch scratch, SoftmaxPartials output, int index)
    {
        var partial = new LambdaIndex.Partial(double.NegativeInfinity, 0);
        Array.Clear(scratch.Merged);
        run.Query(lambdaQuery, queryPosition, temperature, slope, ref partial, scratch.Merged, scratch.Weights, scratch.BlockSum);
        output.LogScales[index] = partial.Max;
        output.Sums[index] = partial.Sum;
        var vector = output.Vectors.AsSpan(index * width, width);
        for (int i = 0; i < width; i++) vector[i] = (float)scratch.Merged[i];
    }
}

/// <summary>Working memory of segment queries, reused across them.</summary>
public sealed class SegmentScratch(int width)
{
    internal double[] Merged { get; } = new double[width];
    internal float[] Weights { get; } = new float[LambdaIndex.BlockSize];
    internal float[] BlockSum { get; } = new float[width];
}

/// <summary>
/// Where a cache's oldest positions live when they are not here: asked once per layer of a forward pass for the partials
/// of every external segment against every query λ of the block.
/// </summary>
public interface IExternalContext
{
    /// <summary>
    /// For queries in row-major (row, head) order, the rows at positions <paramref name="firstPosition"/>, +1, …, the
    /// partials of every external segment in position order: entry q · segments + s. Blocks until the holders answer.
    /// </summary>
    SoftmaxPartials Gather(int layer, int firstPosition, ReadOnlySpan<float> queryLambdas);

    /// <summary>Forgets external positions from <paramref name="length"/> on and returns how many are still held (whole segments).</summary>
    int CutTo(int length);
}
