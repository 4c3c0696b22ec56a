namespace TauCluster.Engine;

/// <summary>
/// Append-only rows of a fixed width kept in fixed-size chunks, so growing never copies what is held
/// (the cache analogue of vLLM's blocks). <see cref="Reserve"/> allocates ahead so decoding allocates nothing.
/// </summary>
public sealed class ChunkedRows(int width)
{
    public const int RowsPerChunk = 256;

    private readonly List<float[]> chunks = [];

    public int Width { get; } = width;
    public int Count { get; private set; }
    public long Bytes => (long)Count * Width * sizeof(float);

    public void Reserve(int rows)
    {
        while (chunks.Count * RowsPerChunk < rows) chunks.Add(new float[RowsPerChunk * Width]);
    }

    public void Append(ReadOnlySpan<float> row)
    {
        Reserve(Count + 1);
        row.CopyTo(RowSpan(Count));
        Count++;
    }

    public ReadOnlySpan<float> Row(int index) => RowSpan(index);

    /// <summary>The rows [start, start + length) of one chunk as one span; callers walk chunk by chunk.</summary>
    public ReadOnlySpan<float> Rows(int chunk, int count) => new(chunks[chunk], 0, count * Width);

    /// <summary>Drops rows past <paramref name="rows"/>; the chunks stay allocated for reuse.</summary>
    public void Truncate(int rows) => Count = Math.Min(Count, Math.Max(0, rows));

    /// <summary>A copy of the first <paramref name="rows"/> rows (whole chunks are copied).</summary>
    public ChunkedRows CopyPrefix(int rows)
    {
        var copy = new ChunkedRows(Width);
        int full = (Math.Min(rows, Count) + RowsPerChunk - 1) / RowsPerChunk;
        for (int c = 0; c < full; c++) copy.chunks.Add((float[])chunks[c].Clone());
        copy.Count = Math.Min(rows, Count);
        return copy;
    }

    private Span<float> RowSpan(int index) =>
        new(chunks[index / RowsPerChunk], index % RowsPerChunk * Width, Width);
}
