// The kitchen page (placeholder: built next).
import { token } from "/web/larder.js";
token();
