namespace TauCluster.Engine;

/// <summary>
/// The lanes of one forward pass, kept where the kernel pool's chunks can read them (a span cannot be), with the first
/// row of each. Set once per pass and read by every layer's key and attention work; cleared when the pass ends, so that
/// no session's cache is held past it.
/// </summary>
internal sealed class PassLanes
{
    private Lane[] lanes = new Lane[1];
    private int[] firstRow = new int[2];

    public int Count { get; private set; }

    public Lane this[int lane] => lanes[lane];

    /// <summary>The pass's row at which lane <paramref name="lane"/>'s rows begin.</summary>
    public int FirstRow(int lane) => firstRow[lane];

    public void Set(ReadOnlySpan<Lane> block)
    {
        if (lanes.Length < block.Length)
        {
            lanes = new Lane[block.Length];
            firstRow = new int[block.Length + 1];
        }
        for (int l = 0; l < block.Length; l++)
        {
            lanes[l] = block[l];
            firstRow[l + 1] = firstRow[l] + block[l].Rows;
        }
        Count = block.Length;
    }

    public void Clear()
    {
        Array.Clear(lanes, 0, Count);
        Count = 0;
    }
}
