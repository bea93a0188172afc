"""Task output and node files on the web: which copy to read (the node's or the saved one in Blob), windows,
the shared live tail, search, downloads and zips, and the pages that show them."""
